"""A live `pico-llm serve` for the server and browser tests, and the tiny runs it serves."""

import http.client
import json
import re
import subprocess
import sys
from contextlib import contextmanager

import pytest

from pico_llm.cli import main

from .conftest import REPO

TEXT = "".join(f"{name} said: the {thing} is in the {place}.\n" for name in ("Anna", "Ben", "Cleo", "Dan")
               for thing in ("key", "map", "cup") for place in ("box", "hall", "garden")) * 4


def train(data, out, *model):
    assert main(["train", "--data", str(data), *model, "--batch-size", "16", "--max-steps", "150", "--lr", "3e-3",
                 "--eval-every", "75", "--eval-tokens", "512", "--sample-tokens", "4", "--dtype", "float32",
                 "--out", str(out)]) == 0


class Server:
    """`pico-llm serve` in a child process on a free port; `url` once it says it is serving."""

    def __init__(self, *args):
        self.process = subprocess.Popen([sys.executable, "-m", "pico_llm", "serve", *map(str, args), "--port", "0"],
                                        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()  # the event: the line it prints once it listens
        match = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        assert match, line + self.process.stderr.read()
        self.port = int(match.group(1))
        self.url = f"http://127.0.0.1:{self.port}"
        import openai

        self.client = openai.OpenAI(base_url=self.url + "/v1", api_key="unused", max_retries=0, timeout=120)

    def stop(self) -> None:
        self.process.terminate()
        self.process.communicate(timeout=30)

    def request(self, method: str, path: str, body: str | None = None) -> tuple[int, dict]:
        """A raw HTTP request (what no client library would send), its status and JSON body."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            connection.request(method, path, body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            return response.status, json.loads(response.read())
        finally:
            connection.close()

    @contextmanager
    def open_stream(self, body: dict):
        """A streamed completion read line by line; leaving the block closes the connection (the client goes away)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        connection.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
        response = connection.getresponse()
        try:
            yield (line.decode() for line in iter(response.fp.readline, b""))
        finally:
            connection.close()


@pytest.fixture(scope="session")
def served(tmp_path_factory):
    """Two tiny runs trained on a repetitive text (confident, so greedy text is stable) and a server for them."""
    pytest.importorskip("openai", reason="the dev extra installs openai")
    pytest.importorskip("uvicorn", reason="the serve extra installs uvicorn")
    root = tmp_path_factory.mktemp("served")
    data = root / "data.txt"
    data.write_text(TEXT)
    runs = root / "runs"
    train(data, runs / "transformer", "--model", "transformer", "--n-layer", "2", "--n-head", "2", "--n-embd", "48",
          "--context", "96")
    train(data, runs / "cnn", "--width", "48", "--n-layers", "4", "--context", "64")
    server = Server(runs, "--max-batch", "32")
    yield server, runs
    server.stop()


