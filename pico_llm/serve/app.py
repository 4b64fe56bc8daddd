"""The HTTP app: the OpenAI-compatible API, the playground (/) and the runs dashboard (/runs).

Built on Starlette (served by uvicorn). Each model is loaded on its first request, with an `Engine`
that batches its requests continuously (engine.py). Streams are Server-Sent Events: one `data:
{json}` event a piece of text, `data: [DONE]` at the end; a client that goes away stops its own
generation and no one else's.
"""

from __future__ import annotations

import asyncio
import json
import threading
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..errors import PicoError
from ..inference.loading import load_run
from ..inference.runs import curve, find_runs, summary
from .engine import Engine, Job, QueueFull
from .protocol import (
    MAX_BODY_BYTES,
    ApiError,
    GenerationRequest,
    chat_request,
    chunk_choice,
    completion_request,
    envelope,
    response_choice,
    usage,
)

STATIC = Path(__file__).with_name("static")


class Catalog:
    """The served models by id; each is loaded, with its engine, on first use."""

    def __init__(self, paths: list[str], max_batch: int, max_queue: int, device: str):
        self.folders = find_runs(paths)
        self.max_batch, self.max_queue, self.device = max_batch, max_queue, device
        self.engines: dict[str, tuple[Engine, object]] = {}
        self.lock = threading.Lock()

    def folder(self, model_id) -> Path:
        if model_id not in self.folders:
            raise ApiError(404, f"the model '{model_id}' does not exist; GET /v1/models lists the ones served", "model",
                           "model_not_found")
        return self.folders[model_id]

    def engine(self, model_id: str) -> tuple[Engine, object]:
        """(engine, tokenizer) of a model, loading it the first time."""
        folder = self.folder(model_id)
        with self.lock:
            if model_id not in self.engines:
                try:
                    run = load_run(folder, device=self.device)
                except PicoError as err:
                    raise ApiError(404, f"the model '{model_id}' cannot be loaded: {err}", "model", "model_not_loadable") from None
                self.engines[model_id] = (Engine(run.model, run.tokenizer, self.max_batch, self.max_queue), run.tokenizer)
            return self.engines[model_id]


async def read_json(request: Request) -> dict:
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise ApiError(413, f"the request body has {len(body):,} bytes, more than the limit of {MAX_BODY_BYTES:,}", None,
                       "request_too_large")
    try:
        content = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ApiError(400, f"the request body is not JSON ({err})", None, "invalid_json") from None
    if not isinstance(content, dict):
        raise ApiError(422, "the request body must be a JSON object", None, "invalid_type")
    return content


def make_jobs(request: GenerationRequest, listen) -> list[Job]:
    """One job per prompt and choice; with a seed, choice j of a prompt samples with seed + j (choice 0:
    the seed itself, as `pico-llm generate --seed` does)."""
    jobs = []
    for prompt in request.prompts:
        for j in range(request.n):
            index, sampling = len(jobs), request.sampling
            if sampling.seed is not None:
                sampling = replace(sampling, seed=sampling.seed + j)
            jobs.append(Job(prompt, request.max_tokens, sampling, request.stop,
                            lambda kind, value, index=index: listen(index, kind, value)))
    return jobs


def sse(body: dict | str) -> str:
    return f"data: {body if isinstance(body, str) else json.dumps(body)}\n\n"


async def generate(request: Request, chat: bool) -> Response:
    body = await read_json(request)
    catalog: Catalog = request.app.state.catalog
    model_id = body.get("model")
    if not isinstance(model_id, str):
        raise ApiError(422, "'model' must be the id of a served model (a string)", "model", "invalid_type")
    catalog.folder(model_id)
    engine, tokenizer = await run_in_threadpool(catalog.engine, model_id)
    parsed = chat_request(body, tokenizer) if chat else completion_request(body, tokenizer, engine.model.config.vocab_size)
    events: asyncio.Queue = asyncio.Queue()
    loop = asyncio.get_running_loop()
    jobs = make_jobs(parsed, lambda index, kind, value: loop.call_soon_threadsafe(events.put_nowait, (index, kind, value)))
    try:
        engine.submit(jobs)
    except QueueFull as err:
        raise ApiError(429, f"the server is busy ({err}); retry in a moment", None, "queue_full") from None
    if parsed.stream:
        return StreamingResponse(stream(parsed, jobs, events), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    return await collect(request, parsed, jobs, events)


async def stream(request: GenerationRequest, jobs: list[Job], events: asyncio.Queue):
    """The SSE stream: a role delta first (chat), a chunk a piece of text, a finish_reason once a choice,
    the usage last (if asked), then [DONE]. Closing it (the client went away) cancels the jobs."""
    try:
        if request.chat:
            for index in range(len(jobs)):
                yield sse(envelope(request, [chunk_choice(request, index, "", None, first=True)], chunk=True))
        remaining = len(jobs)
        while remaining:
            batch = [await events.get()]
            while not events.empty():  # what the engine made while the last chunk went out: fewer, larger chunks
                batch.append(events.get_nowait())
            for index, kind, value in merge_text(batch):
                if kind == "error":
                    yield sse(ApiError(500, f"generation failed: {value}", None, "server_error").body())
                    return
                finish = value if kind == "done" else None
                remaining -= kind == "done"
                yield sse(envelope(request, [chunk_choice(request, index, value if kind == "text" else "", finish)],
                                   chunk=True))
        if request.include_usage:
            yield sse(envelope(request, [], chunk=True, usage_=usage(request, sum(job.completion_tokens for job in jobs))))
        yield sse("[DONE]")
    finally:
        for job in jobs:
            job.cancelled = True


def merge_text(events: list[tuple]) -> list[tuple]:
    """Consecutive text events of one choice as one (the order of everything else kept)."""
    merged: list[tuple] = []
    for event in events:
        if merged and event[1] == "text" and merged[-1][1] == "text" and merged[-1][0] == event[0]:
            merged[-1] = (event[0], "text", merged[-1][2] + event[2])
        else:
            merged.append(event)
    return merged


async def collect(http: Request, request: GenerationRequest, jobs: list[Job], events: asyncio.Queue) -> Response:
    """A whole response; a client that goes away before it is done cancels its jobs."""
    texts, reasons = [""] * len(jobs), [None] * len(jobs)
    try:
        while None in reasons:
            try:
                index, kind, value = await asyncio.wait_for(events.get(), timeout=1.0)
            except asyncio.TimeoutError:
                if await http.is_disconnected():
                    return Response(status_code=499)
                continue
            if kind == "error":
                raise ApiError(500, f"generation failed: {value}", None, "server_error")
            if kind == "text":
                texts[index] += value
            else:
                reasons[index] = value
    finally:
        for job in jobs:
            job.cancelled = True
    choices = [response_choice(request, index, text, reason) for index, (text, reason) in enumerate(zip(texts, reasons))]
    return JSONResponse(envelope(request, choices, chunk=False, usage_=usage(request, sum(j.completion_tokens for j in jobs))))


async def completions(request: Request) -> Response:
    return await generate(request, chat=False)


async def chat_completions(request: Request) -> Response:
    return await generate(request, chat=True)


async def models(request: Request) -> Response:
    catalog: Catalog = request.app.state.catalog
    return JSONResponse({"object": "list", "data": [
        {"id": model_id, "object": "model", "created": int(folder.stat().st_mtime), "owned_by": "pico-llm"}
        for model_id, folder in catalog.folders.items()]})


async def health(request: Request) -> Response:
    """Up, how many models, and for each loaded one the requests decoding, waiting, and cancelled so far."""
    catalog: Catalog = request.app.state.catalog
    loaded = {model_id: {"running": engine.running, "waiting": len(engine.pending), "cancelled": engine.cancelled}
              for model_id, (engine, _) in list(catalog.engines.items())}
    return JSONResponse({"status": "ok", "models": len(catalog.folders), "loaded": loaded})


async def runs(request: Request) -> Response:
    catalog: Catalog = request.app.state.catalog
    return JSONResponse(await run_in_threadpool(lambda: [summary(i, f) for i, f in catalog.folders.items()]))


async def run_detail(request: Request) -> Response:
    """One run: its summary, config, val curve and samples (what the run page shows)."""
    catalog: Catalog = request.app.state.catalog
    run_id = request.path_params["run_id"]
    folder = catalog.folder(run_id)
    samples = folder / "samples.txt"
    return JSONResponse({"summary": summary(run_id, folder), "config": json.loads((folder / "config.json").read_text()),
                         "curve": curve(folder), "samples": samples.read_text(errors="replace") if samples.is_file() else "",
                         "has_curves_png": (folder / "curves.png").is_file()})


async def run_curves_png(request: Request) -> Response:
    folder = request.app.state.catalog.folder(request.path_params["run_id"])
    if not (folder / "curves.png").is_file():
        raise ApiError(404, "this run has no curves.png", None, "not_found")
    return FileResponse(folder / "curves.png")


def page(name: str):
    async def serve_page(request: Request) -> Response:
        return FileResponse(STATIC / name, headers={"Cache-Control": "no-cache"})

    return serve_page


async def api_error(request: Request, err: ApiError) -> Response:
    return JSONResponse(err.body(), status_code=err.status)


async def http_error(request: Request, err: HTTPException) -> Response:
    return JSONResponse(ApiError(err.status_code, str(err.detail), None, "not_found" if err.status_code == 404 else None).body(),
                        status_code=err.status_code)


async def unexpected(request: Request, err: Exception) -> Response:
    return JSONResponse(ApiError(500, f"{type(err).__name__}: {err}", None, "server_error").body(), status_code=500)


@asynccontextmanager
async def lifespan(app: Starlette):
    yield
    for engine, _ in list(app.state.catalog.engines.values()):
        engine.close()


def create_app(paths: list[str], max_batch: int = 32, max_queue: int = 64, device: str = "auto") -> Starlette:
    app = Starlette(lifespan=lifespan, routes=[
        Route("/health", health),
        Route("/v1/models", models),
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/api/runs", runs),
        Route("/api/runs/{run_id:path}/curves.png", run_curves_png),
        Route("/api/runs/{run_id:path}", run_detail),
        Route("/", page("index.html")),
        Route("/runs", page("runs.html")),
        Route("/runs/{run_id:path}", page("run.html")),
        Mount("/static", StaticFiles(directory=STATIC)),
    ], exception_handlers={ApiError: api_error, HTTPException: http_error, Exception: unexpected})
    app.state.catalog = Catalog(paths, max_batch, max_queue, device)
    return app
