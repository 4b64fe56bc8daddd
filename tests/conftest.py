"""Shared fixtures: a private token cache, small corpora, and the optional ../shared/data corpora."""

import os
import tempfile
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

os.environ.setdefault("PICO_LLM_CACHE", tempfile.mkdtemp(prefix="pico-llm-test-cache-"))
os.environ["HF_HUB_OFFLINE"] = os.environ["HF_DATASETS_OFFLINE"] = "1"  # tests never reach the Hugging Face Hub
torch.set_num_threads(min(2, torch.get_num_threads()))

TINY_SHAKESPEARE = SHARED_DATA / "tinyshakespeare.txt"
needs_shakespeare = pytest.mark.skipif(not TINY_SHAKESPEARE.is_file(), reason="../shared/data is absent")


@pytest.fixture
def text_file(tmp_path) -> Path:
    """A small, varied UTF-8 text (a few KB) with some multi-byte characters."""
    lines = [f"line {i}: the quick brown fox jumps over the lazy dog, café №{i % 7}." for i in range(120)]
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def repeating_file(tmp_path) -> Path:
    path = tmp_path / "repeat.txt"
    path.write_text("abcdefghij" * 400)
    return path


pytest_plugins = ["tests.servers"]  # the `served` fixture: one live server shared by the server and browser tests
