"""Shipping a model: safetensors weights in every run folder, pretrained folders, and Hugging Face exports
checked with `transformers` itself (logits, greedy generation, tokenizers)."""

import json
import os
import socket

import pytest
import torch
import torch.distributed as dist

from pico_llm import from_pretrained, generate, load_run
from pico_llm.cli import main
from pico_llm.inference.generation import Sampling, stream_ids
from pico_llm.inference.quantize import quantize
from pico_llm.models import build_model
from pico_llm.training.checkpoint import load_checkpoint, save_checkpoint
from pico_llm.weights import read_weights, save_weights

transformers = pytest.importorskip("transformers", reason="the dev extra installs transformers")

TEXT = "".join(f"line {i}: the quick brown fox jumps over the lazy dog, café №{i % 7} 😀.\n" for i in range(120))
LLAMA = ["--model", "transformer", "--n-layer", "2", "--n-head", "2", "--n-embd", "32"]
GPT2 = [*LLAMA, "--norm", "layernorm", "--mlp", "gelu", "--pos-embedding", "learned", "--tie-embeddings", "false"]
ROUND_TRIP = "Plain ASCII, accents: café naïve Ærøskøbing, emoji 😀🚀, tabs\tand  spaces.\n"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Tiny models trained a few steps: Llama-like (byte, char, bpe tokenizers) and GPT-2-like."""
    root = tmp_path_factory.mktemp("export")
    data = root / "data.txt"
    data.write_text(TEXT + ROUND_TRIP)
    made = {}
    for name, model, tokenizer in (("llama", LLAMA, "byte"), ("llama-char", LLAMA, "char"), ("llama-bpe", LLAMA, "bpe"),
                                   ("gpt2", GPT2, "byte")):
        made[name] = root / name
        assert main(["train", "--data", str(data), *model, "--tokenizer", tokenizer, "--vocab-size", "300", "--context", "128",
                     "--batch-size", "8", "--max-steps", "6", "--eval-every", "3", "--sample-tokens", "4", "--dtype",
                     "float32", "--out", str(made[name])]) == 0
    return made


def no_pickle_in(folder) -> bool:
    """Every file parses as JSON or as safetensors (tensors and a string header): nothing can run code."""
    for path in folder.iterdir():
        if path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".safetensors":
            read_weights(path)
        else:
            return False
    return True


def test_a_run_folder_is_a_pretrained_folder(runs):
    folder = runs["llama"]
    tensors, metadata = read_weights(folder / "model.safetensors")
    assert "head.weight" not in tensors and "input.embed.weight" in tensors  # tied: stored once
    assert int(metadata["step"]) in (3, 6)
    model, tokenizer = from_pretrained(folder)
    assert model.head.weight is model.input.embed.weight  # and tied again
    assert tokenizer.decode(tokenizer.encode(ROUND_TRIP)) == ROUND_TRIP


def test_export_safetensors_generates_as_the_run_does(runs, tmp_path):
    out = tmp_path / "pretrained"
    assert main(["export", str(runs["llama"]), "--format", "safetensors", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors", "tokenizer.json"]
    assert no_pickle_in(out)
    model, tokenizer = from_pretrained(out)
    ours = generate(model, "line 3", 40, tokenizer=tokenizer, seed=7, top_k=20)
    assert ours == load_run(runs["llama"]).generate("line 3", 40, seed=7, top_k=20)


def test_export_int8_is_a_quarter_and_loads_directly(runs, tmp_path):
    for kind, flags in (("float32", []), ("int8", ["--quantize", "int8"]), ("bfloat16", ["--dtype", "bfloat16"])):
        assert main(["export", str(runs["gpt2"]), "--format", "safetensors", "--out", str(tmp_path / kind), *flags]) == 0
    sizes = {kind: (tmp_path / kind / "model.safetensors").stat().st_size for kind in ("float32", "int8", "bfloat16")}
    float_model = load_run(runs["gpt2"]).model
    linear = [m.weight for m in float_model.modules() if isinstance(m, torch.nn.Linear)]
    linear_bytes = sum(w.numel() * 4 for w in linear)
    # Linear weights: 1 byte a weight + a bfloat16 scale a row, a quarter of float32; the rest stays float32
    expected = sizes["float32"] - linear_bytes + sum(w.numel() + 2 * w.shape[0] for w in linear)
    assert abs(sizes["int8"] - expected) < 4096  # the header's size differs
    assert abs(sizes["bfloat16"] - sizes["float32"] / 2) < 4096
    loaded = load_run(tmp_path / "int8").model
    reference = quantize(load_run(runs["gpt2"]).model, "int8")
    tokens = torch.randint(0, 256, (2, 64))
    with torch.no_grad():
        assert torch.equal(loaded(tokens), reference(tokens))  # the same int8 weights, so the same logits
    assert no_pickle_in(tmp_path / "int8")


def test_old_run_folders_with_best_pt_still_load(runs, tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    for name in ("config.json", "tokenizer.json"):
        (old / name).write_bytes((runs["llama"] / name).read_bytes())
    state = load_checkpoint(runs["llama"] / "checkpoint.pt")
    save_checkpoint({k: state[k] for k in ("model_spec", "model", "tokenizer", "step")}, old / "best.pt")
    assert isinstance(load_run(old).generate("line", 5, seed=0), str)


def test_weights_never_carry_wrapper_prefixes(tmp_path):
    model = build_model("transformer", n_layer=1, n_head=2, n_embd=16)
    save_weights(torch.compile(model), tmp_path / "compiled.safetensors")  # compile is lazy: nothing compiles here
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        save_weights(torch.nn.parallel.DistributedDataParallel(model), tmp_path / "ddp.safetensors")
    finally:
        dist.destroy_process_group()
    for name in ("compiled", "ddp"):
        keys = set(read_weights(tmp_path / f"{name}.safetensors")[0])
        assert keys == {"input.embed.weight", "blocks.0.attn_norm.weight", "blocks.0.attn.qkv.weight",
                        "blocks.0.attn.proj.weight", "blocks.0.mlp_norm.weight", "blocks.0.mlp.up.weight",
                        "blocks.0.mlp.down.weight", "norm.weight"}


@pytest.mark.parametrize("name, architecture", [("llama", "LlamaForCausalLM"), ("gpt2", "GPT2LMHeadModel")])
def test_transformers_loads_the_hf_export_with_our_logits_and_greedy_text(name, architecture, runs, tmp_path):
    out = tmp_path / "hf"
    assert main(["export", str(runs[name]), "--format", "hf", "--out", str(out)]) == 0
    assert no_pickle_in(out)
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == [architecture] and config["max_position_embeddings" if name == "llama" else "n_positions"] == 128
    theirs = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    assert type(theirs).__name__ == architecture
    ours = load_run(runs[name]).model
    tokens = torch.randint(0, 256, (3, 128), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert (theirs(tokens).logits - ours(tokens)).abs().max() < 1e-4  # every position
    prompt = list(b"line ")
    greedy = list(stream_ids(ours, prompt, 64, Sampling(temperature=0)))
    generated = theirs.generate(torch.tensor([prompt]), max_new_tokens=64, min_new_tokens=64, do_sample=False)
    assert generated[0, len(prompt):].tolist() == [int(t) for t in greedy]


@pytest.mark.parametrize("name", ["llama", "llama-char", "llama-bpe"])
def test_auto_tokenizer_round_trips_as_ours(name, runs, tmp_path):
    out = tmp_path / "hf"
    assert main(["export", str(runs[name]), "--format", "hf", "--out", str(out)]) == 0
    theirs = transformers.AutoTokenizer.from_pretrained(out)
    ours = load_run(runs[name]).tokenizer
    assert theirs.is_fast
    assert theirs.encode(ROUND_TRIP) == ours.encode(ROUND_TRIP)
    assert theirs.decode(ours.encode(ROUND_TRIP)) == ROUND_TRIP == ours.decode(ours.encode(ROUND_TRIP))


def bad_exports(runs, tmp_path):
    empty_run = tmp_path / "no_weights"
    empty_run.mkdir()
    (empty_run / "config.json").write_bytes((runs["llama"] / "config.json").read_bytes())
    cnn = tmp_path / "cnn"
    assert main(["train", "--data", str(runs["llama"].parent / "data.txt"), "--width", "16", "--n-layers", "2",
                 "--context", "32", "--max-steps", "2", "--sample-tokens", "4", "--out", str(cnn)]) == 0
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("keep me")
    llama = str(runs["llama"])
    return {
        "no weights": (["export", str(empty_run), "--format", "hf", "--out", str(tmp_path / "a")], "has no weights yet"),
        "unknown format": (["export", llama, "--format", "onnx", "--out", str(tmp_path / "b")],
                           "--format must be one of safetensors, hf, gguf, got 'onnx'"),
        "hf of a cnn": (["export", str(cnn), "--format", "hf", "--out", str(tmp_path / "c")],
                        "--format hf supports the transformer with norm rmsnorm"),
        "gguf of a cnn": (["export", str(cnn), "--format", "gguf", "--out", str(tmp_path / "d")],
                          "--format safetensors ships any model as a pretrained folder"),
        "gguf of a gpt2": (["export", str(runs["gpt2"]), "--format", "gguf", "--out", str(tmp_path / "e")],
                           "--format gguf writes the Llama-compatible transformer"),
        "out not empty": (["export", llama, "--format", "safetensors", "--out", str(busy)],
                          f"--out {busy} is not empty; choose an empty or new folder, or replace its export with --overwrite"),
        "int8 for hf": (["export", llama, "--format", "hf", "--quantize", "int8", "--out", str(tmp_path / "f")],
                        "--quantize int8 is for the safetensors and gguf formats"),
    }


@pytest.mark.parametrize("case", ["no weights", "unknown format", "hf of a cnn", "gguf of a cnn", "gguf of a gpt2",
                                  "out not empty", "int8 for hf"])
def test_bad_exports_are_one_line(case, runs, tmp_path, capsys):
    argv, message = bad_exports(runs, tmp_path)[case]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1, err


def test_overwrite_replaces_only_the_export(runs, tmp_path):
    out = tmp_path / "out"
    assert main(["export", str(runs["llama"]), "--format", "hf", "--out", str(out)]) == 0
    (out / "notes.txt").write_text("keep me")
    assert main(["export", str(runs["llama"]), "--format", "safetensors", "--out", str(out), "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors", "notes.txt", "tokenizer.json"]
    assert os.path.getsize(out / "notes.txt") == len("keep me")
