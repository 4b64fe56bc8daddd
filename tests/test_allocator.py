"""Freed memory stays in the process: a step's activations reuse last step's pages instead of faulting new ones."""

import os
import platform
import subprocess
import sys

import pytest

from pico_llm import cli
from pico_llm.training.allocator import keep_freed_memory

glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")

FAULTS_PER_STEP = """
import resource, sys, torch
from pico_llm.training.allocator import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
def step():
    activations = torch.ones(16 * 2**20)  # 64 MB: above glibc's largest mmap threshold
    return float(activations[-1])
for _ in range(12):  # malloc's free lists settle: small chunks held in its per-thread cache pin big ones at first
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(4):
    step()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // 4)
"""


def faults_per_step(mode: str) -> int:
    env = {name: value for name, value in os.environ.items() if name not in ("PICO_LLM_SYSTEM_MALLOC", "GLIBC_TUNABLES")}
    done = subprocess.run([sys.executable, "-c", FAULTS_PER_STEP, mode], capture_output=True, text=True, check=True, env=env)
    return int(done.stdout)


@glibc_only
def test_freed_blocks_are_reused_without_page_faults():
    system, kept = faults_per_step("system"), faults_per_step("keep")
    assert system > 10_000, "glibc unmapped the 64 MB block and faulted its 16,384 pages back in"
    assert kept < system / 20


def test_system_malloc_on_request(monkeypatch):
    monkeypatch.setenv("PICO_LLM_SYSTEM_MALLOC", "1")
    assert not keep_freed_memory()


def test_every_command_keeps_freed_memory(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(cli, "keep_freed_memory", lambda: calls.append(True))
    assert cli.main(["models"]) == 0
    assert calls == [True]
