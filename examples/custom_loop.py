"""A minimal custom training loop built from pico_llm's pieces (no Trainer, no run folder).

    python examples/custom_loop.py [TEXT_FILE] [STEPS]
"""

import sys

import torch
import torch.nn.functional as F

from pico_llm import build_model, evaluate, generate, load_corpus
from pico_llm.data.batches import sample_batch


def main(path: str = "data/sample_text.txt", steps: int = 200) -> float:
    torch.manual_seed(0)
    corpus = load_corpus(path, "byte")
    context = 64
    model = build_model("kgram_mlp", vocab_size=corpus.tokenizer.vocab_size, context=context, k=8, hidden=256)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    batches = torch.Generator().manual_seed(0)
    for step in range(1, steps + 1):
        inputs, targets = sample_batch(corpus.train, context, 16, batches)
        loss = F.cross_entropy(model(inputs).flatten(0, 1), targets.flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 50 == 0:
            print(f"step {step}: train loss {loss.item():.3f}")
    metrics = evaluate(model, corpus.val, corpus.tokenizer.token_byte_lengths(), context, 16, torch.device("cpu"))
    print(f"val bits per byte: {metrics['bits_per_byte']:.3f}")
    print(generate(model, "The ", max_new_tokens=80, tokenizer=corpus.tokenizer, seed=0))
    return metrics["bits_per_byte"]


if __name__ == "__main__":
    main(*sys.argv[1:2], *[int(a) for a in sys.argv[2:3]])
