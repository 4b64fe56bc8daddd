"""A process of a two-process gloo job (started by tests/test_distributed.py with torch.multiprocessing):
it trains every registered encoder a few steps under DistributedDataParallel and rank 0 saves the weights."""

import os
from unittest import mock

import torch
import torch.distributed as dist

from pico_llm import TrainConfig, Trainer, build_model, load_corpus
from pico_llm.models import model_class, model_names


def train_a_few_steps(name: str, text_file: str, batch_size: int, optimizer: str) -> dict:
    """Three steps without dropout (each process draws its own masks) and with float32 Newton–Schulz (bfloat16
    would turn the last-bit differences of two summation orders into 1e-3 ones)."""
    torch.manual_seed(0)
    fields = {**model_class(name).debug, **({"dropout": 0.0} if "dropout" in model_class(name).Config.__dataclass_fields__ else {})}
    model = build_model(name, vocab_size=256, context=16, **fields)
    config = TrainConfig(data=text_file, batch_size=batch_size, max_steps=3, warmup_steps=1, dtype="float32",
                         device="cpu", optimizer=optimizer)
    with mock.patch("pico_llm.training.optimizers.newton_schulz_dtype", return_value=torch.float32):
        trainer = Trainer(model, load_corpus(text_file, "byte"), config)
    for _ in range(3):
        trainer.train_step()
    return {key: value.detach().clone() for key, value in trainer.model.state_dict().items()}


def train_every_model(rank: int, world_size: int, port: int, text_file: str, out: str, optimizer: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    weights = {name: train_a_few_steps(name, text_file, 8 // world_size, optimizer) for name in model_names()}
    if rank == 0:
        torch.save(weights, out)
    dist.destroy_process_group()
