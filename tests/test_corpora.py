"""Corpora larger than memory: streamed files, folders and globs, parallel tokenization, named corpora
downloaded once (from a local HTTP server, never the internet) and Hugging Face datasets (offline)."""

import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from pico_llm.data import corpora, shards
from pico_llm.data.cache import load_corpus, read_corpus, split_bytes, tokenize_cached
from pico_llm.data.tokenizers import ByteTokenizer, train_tokenizer
from pico_llm.errors import PicoError

from .conftest import REPO, TINY_SHAKESPEARE


def decoded(corpus) -> bytes:
    return corpus.tokenizer.decode_bytes(corpus.train) + corpus.tokenizer.decode_bytes(corpus.val)


def many_files(folder, count=12):
    folder.mkdir()
    for i in range(count):
        (folder / f"part{i:02d}.txt").write_text("".join(f"doc {i} line {j}: é → ok\n" for j in range(40)))
    return sorted(folder.glob("*.txt"))


def test_folder_and_glob_stream_to_the_same_cache_as_in_memory(tmp_path, monkeypatch):
    monkeypatch.setattr(corpora, "BLOCK_BYTES", 100)  # many blocks, cut anywhere, even inside characters
    files = many_files(tmp_path / "docs")
    joined = b"\n".join(f.read_bytes() for f in files)
    train, val = split_bytes(joined)
    for spec in (tmp_path / "docs", str(tmp_path / "docs" / "part*.txt")):
        corpus = load_corpus(spec, "byte", workers=1)
        assert decoded(corpus) == joined
        assert corpus.tokenizer.decode_bytes(corpus.val) == val
        assert corpus.train.filename == tokenize_cached(train, ByteTokenizer()).filename  # content-hash keys kept
    assert read_corpus(str(tmp_path / "docs" / "part0[01].txt")) == b"\n".join(f.read_bytes() for f in files[:2])
    with pytest.raises(PicoError, match="no files match"):
        load_corpus(str(tmp_path / "docs" / "*.md"), "byte")


def test_parallel_tokenization_is_identical_to_one_process(tmp_path, monkeypatch):
    monkeypatch.setattr(shards, "PIECE_BYTES", 1000)  # ~14 pieces for two spawned workers
    files = many_files(tmp_path / "docs")
    text = b"\n".join(f.read_bytes() for f in files)
    bpe = train_tokenizer("bpe", text, 300)
    single = list(shards.encode_pieces(shards.pieces([(0, text)]), bpe, 1))
    parallel = list(shards.encode_pieces(shards.pieces([(0, text)]), bpe, 2))
    assert len(single) > 10
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(single, parallel, strict=True))
    assert bpe.decode_bytes(np.concatenate([ids for _, ids in parallel])) == text
    corpus = load_corpus(tmp_path / "docs", "bpe", vocab_size=300, workers=2)
    assert decoded(corpus) == text
    assert load_corpus(tmp_path / "docs", "bpe", vocab_size=300).tokenizer.state() == corpus.tokenizer.state()


def test_a_worker_error_is_one_clear_message(tmp_path, monkeypatch):
    monkeypatch.setattr(shards, "PIECE_BYTES", 50)
    char = train_tokenizer("char", b"abc\n")
    with pytest.raises(PicoError, match="not in the char tokenizer's vocabulary"):
        list(shards.encode_pieces(shards.pieces([(0, b"abc\n" * 30 + b"xyz\n")]), char, 2))


class CorpusServer(http.server.ThreadingHTTPServer):
    """Serves one file from memory on 127.0.0.1 and counts the requests."""

    def __init__(self, files: dict[str, bytes]):
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests += 1
                body = files.get(self.path.lstrip("/"))
                self.send_response(200 if body is not None else 404)
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.requests = 0
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def serve():
    """Start local corpus servers; they are stopped after the test."""
    servers = []
    yield lambda files: servers.append(CorpusServer(files)) or servers[-1]
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PICO_LLM_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_named_corpus_downloads_once_with_its_checksum(private_cache, serve, monkeypatch):
    text = b"First Citizen:\nBefore we proceed any further, hear me speak.\n" * 50
    named = corpora.NamedCorpus("https://example.invalid/tinyshakespeare.txt", hashlib.sha256(text).hexdigest())
    monkeypatch.setitem(corpora.NAMED_CORPORA, "tinyshakespeare", named)
    server = serve({"tinyshakespeare.txt": text})
    monkeypatch.setenv(corpora.MIRROR_ENV, server.url)
    assert decoded(load_corpus("tinyshakespeare", "byte")) == text
    assert decoded(load_corpus("tinyshakespeare", "byte")) == text
    assert server.requests == 1
    assert (private_cache / "corpora" / "tinyshakespeare.txt").read_bytes() == text


def test_named_corpus_with_a_wrong_checksum_is_not_cached(private_cache, serve, monkeypatch):
    server = serve({"tinyshakespeare.txt": b"not shakespeare\n" * 10})
    monkeypatch.setenv(corpora.MIRROR_ENV, server.url)
    with pytest.raises(PicoError, match="expected 86c4e6aa"):
        load_corpus("tinyshakespeare", "byte")
    assert not (private_cache / "corpora").exists() or not any((private_cache / "corpora").iterdir())


def test_named_corpus_offline_without_cache_is_one_message(private_cache, monkeypatch):
    server = CorpusServer({})
    url = server.url
    server.shutdown()
    server.server_close()  # nothing listens there any more: as offline as it gets
    monkeypatch.setenv(corpora.MIRROR_ENV, url)
    with pytest.raises(PicoError, match="cannot download names .*connect to the internet once"):
        load_corpus("names", "byte")


@pytest.mark.skipif(not TINY_SHAKESPEARE.is_file(), reason="../shared/data is absent")
def test_the_registered_checksum_is_tiny_shakespeares():
    assert hashlib.sha256(TINY_SHAKESPEARE.read_bytes()).hexdigest() == corpora.NAMED_CORPORA["tinyshakespeare"].sha256


def test_hf_without_datasets_installed_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(PicoError, match=r"pip install 'pico-llm\[hf\]'"):
        load_corpus("hf:someone/never-cached-anywhere", "byte")


@pytest.fixture
def story_folder(tmp_path):
    pytest.importorskip("datasets")
    folder = tmp_path / "stories"
    folder.mkdir()
    for shard in range(2):
        lines = [json.dumps({"story": f"Story {shard}-{i}: once upon a time, a fox.", "id": i}) for i in range(30)]
        (folder / f"shard{shard}.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def test_hf_local_dataset_streams_into_train_and_val_then_is_cached(story_folder, monkeypatch):
    corpus = load_corpus(f"hf:{story_folder}", "char", text_field="story")
    stories = [f"Story {s}-{i}: once upon a time, a fox.\n" for s in range(2) for i in range(30)]
    assert corpus.tokenizer.decode(corpus.val) == "".join(stories[9::10])  # one document in ten
    assert corpus.tokenizer.decode(corpus.train) == "".join(s for i, s in enumerate(stories) if i % 10 != 9)
    import datasets

    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: pytest.fail("the cached tokens were not used"))
    again = load_corpus(f"hf:{story_folder}", "char", text_field="story")
    assert again.train.filename == corpus.train.filename


def test_hf_wrong_text_field_lists_the_fields(story_folder):
    with pytest.raises(PicoError, match="no field 'text'; its fields are story, id"):
        load_corpus(f"hf:{story_folder}", "byte")


def test_hf_offline_and_not_cached_is_one_clear_message(tmp_path):
    pytest.importorskip("datasets")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
           "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9", "PICO_LLM_CACHE": str(tmp_path / "c")}
    result = subprocess.run([sys.executable, "-m", "pico_llm", "train", "--data", "hf:someone/tiny-stories"],
                            cwd=REPO, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1
    assert "is not in pico-llm's cache and cannot be downloaded" in result.stderr
