"""`pico-llm bench serve RUN`: the server's throughput and time to first token under concurrent clients.

A `pico-llm serve` child process serves the run; for each number of clients, that many streamed
completions are sent at once (continuous batching decodes them together), then the same requests
one after another. Reported: aggregate tokens/s both ways and the p50/p95 time to first token.
Clients speak plain HTTP (the standard library), so the measurement needs no client package.
"""

from __future__ import annotations

import http.client
import json
import re
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..errors import PicoError


def start_server(run: Path, max_batch: int) -> tuple[subprocess.Popen, int]:
    process = subprocess.Popen([sys.executable, "-m", "pico_llm", "serve", str(run), "--port", "0", "--max-batch",
                                str(max_batch), "--max-queue", str(4 * max_batch)], stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    match = re.search(r"http://127\.0\.0\.1:(\d+)", line)
    if not match:
        process.kill()
        raise PicoError(f"the server did not start: {line.strip() or 'no output'}")
    return process, int(match.group(1))


def stream_one(port: int, model: str, prompt: str, tokens: int, seed: int) -> tuple[float, float, int]:
    """(seconds to the first text, seconds in all, tokens) of one streamed completion."""
    body = {"model": model, "prompt": prompt, "max_tokens": tokens, "temperature": 0.8, "seed": seed, "stream": True,
            "stream_options": {"include_usage": True}}
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    connection.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
    response = connection.getresponse()
    first, produced = None, 0
    for raw in iter(response.fp.readline, b""):
        line = raw.decode().strip()
        if line == "data: [DONE]":
            break  # the connection stays open (keep-alive): the stream's end is this event, not EOF
        if not line.startswith("data: "):
            continue
        chunk = json.loads(line[6:])
        if first is None and chunk["choices"] and chunk["choices"][0]["text"]:
            first = time.perf_counter() - started
        if chunk.get("usage"):
            produced = chunk["usage"]["completion_tokens"]
    connection.close()
    return first or 0.0, time.perf_counter() - started, produced


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def bench_serve(run: str | Path, clients: list[int], tokens: int, prompt: str = "\n") -> list[dict]:
    run = Path(run)
    process, port = start_server(run, max(clients))
    try:
        model = json.loads(http_get(port, "/v1/models"))["data"][0]["id"]
        stream_one(port, model, prompt, 8, 0)  # load the model and warm up
        results = []
        for count in clients:
            started = time.perf_counter()
            with ThreadPoolExecutor(count) as pool:
                together = list(pool.map(lambda i: stream_one(port, model, prompt, tokens, i), range(count)))
            concurrent_seconds = time.perf_counter() - started
            started = time.perf_counter()
            alone = [stream_one(port, model, prompt, tokens, i) for i in range(count)]
            serial_seconds = time.perf_counter() - started
            first = [t[0] for t in together]
            results.append({
                "clients": count,
                "tokens_per_second_concurrent": round(sum(t[2] for t in together) / concurrent_seconds, 1),
                "tokens_per_second_one_after_another": round(sum(t[2] for t in alone) / serial_seconds, 1),
                "ttft_p50_ms": round(1000 * statistics.median(first), 1),
                "ttft_p95_ms": round(1000 * percentile(first, 0.95), 1),
                "ttft_alone_p50_ms": round(1000 * statistics.median(t[0] for t in alone), 1),
            })
        return results
    finally:
        process.terminate()
        process.wait(timeout=30)


def http_get(port: int, path: str) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.request("GET", path)
    body = connection.getresponse().read().decode()
    connection.close()
    return body
