"""The server, through the official `openai` client against a live `pico-llm serve` on 127.0.0.1."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from pico_llm import load_run
from pico_llm.inference.generation import Sampling, stream_ids

from .servers import Server

openai = pytest.importorskip("openai", reason="the dev extra installs openai")

def test_models_and_health(served):
    server, _ = served
    assert sorted(model.id for model in server.client.models.list()) == ["cnn", "transformer"]
    assert server.request("GET", "/health")[1]["status"] == "ok"


def stream_completion(client, **kwargs):
    """Concatenated text, the finish reasons seen, and the usage chunk of a streamed completion."""
    text, reasons, usage = {}, [], None
    for chunk in client.completions.create(stream=True, stream_options={"include_usage": True}, **kwargs):
        if chunk.usage is not None:
            assert chunk.choices == []
            usage = chunk.usage
        for choice in chunk.choices:
            text[choice.index] = text.get(choice.index, "") + choice.text
            if choice.finish_reason is not None:
                reasons.append((choice.index, choice.finish_reason))
    return text, reasons, usage


@pytest.mark.parametrize("model", ["transformer", "cnn"])
@pytest.mark.parametrize("sampling", [{"temperature": 0}, {"temperature": 0.9, "seed": 7, "top_k": 20}])
def test_streamed_text_equals_the_whole_response(served, model, sampling):
    server, runs = served
    options = {k: v for k, v in sampling.items() if k != "top_k"} | {"extra_body": {"top_k": sampling.get("top_k")}}
    whole = server.client.completions.create(model=model, prompt="Anna said:", max_tokens=40, **options)
    text, reasons, usage = stream_completion(server.client, model=model, prompt="Anna said:", max_tokens=40, **options)
    assert text[0] == whole.choices[0].text
    assert reasons == [(0, whole.choices[0].finish_reason)]  # exactly once
    assert whole.usage.prompt_tokens + whole.usage.completion_tokens == whole.usage.total_tokens
    assert usage.model_dump() == whole.usage.model_dump()
    ours = load_run(runs / model).generate("Anna said:", 40, **sampling)  # served = generated here, seed for seed
    assert whole.choices[0].text == ours


def test_stop_n_and_prompt_lists(served):
    server, _ = served
    response = server.client.completions.create(model="cnn", prompt=["Ben said:", "Cleo said:"], n=2, max_tokens=60,
                                                temperature=0.8, seed=3, stop=["."])
    assert [c.index for c in response.choices] == [0, 1, 2, 3]
    for c in response.choices:
        assert "." not in c.text and (c.finish_reason == "stop" or len(c.text) >= 1)
    assert response.choices[0].text != response.choices[1].text or response.choices[0].finish_reason == "stop"
    assert response.usage.prompt_tokens == 2 * (len("Ben said:") + len("Cleo said:"))


def test_chat_streams_a_role_first_and_one_finish_reason(served):
    server, _ = served
    messages = [{"role": "system", "content": "A story."}, {"role": "user", "content": "Where is the key?"}]
    whole = server.client.chat.completions.create(model="transformer", messages=messages, max_tokens=30, temperature=0)
    chunks = list(server.client.chat.completions.create(model="transformer", messages=messages, max_tokens=30,
                                                         temperature=0, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len({chunk.id for chunk in chunks}) == 1
    assert [c.choices[0].finish_reason for c in chunks if c.choices[0].finish_reason] == [whole.choices[0].finish_reason]
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == whole.choices[0].message.content
    assert whole.choices[0].message.role == "assistant"


BAD = [
    ({"model": "nope", "prompt": "a"}, openai.NotFoundError, 404, "model"),
    ({"model": "cnn", "prompt": "a", "temperature": -1}, openai.BadRequestError, 400, "temperature"),
    ({"model": "cnn", "prompt": "a", "top_p": 2}, openai.BadRequestError, 400, "top_p"),
    ({"model": "cnn", "prompt": "a", "max_tokens": 0}, openai.BadRequestError, 400, "max_tokens"),
    ({"model": "cnn", "prompt": "a", "max_tokens": 10**6}, openai.BadRequestError, 400, "max_tokens"),
    ({"model": "cnn", "prompt": "a", "max_tokens": "ten"}, openai.UnprocessableEntityError, 422, "max_tokens"),
    ({"model": "cnn", "prompt": 3.5}, openai.UnprocessableEntityError, 422, "prompt"),
    ({"model": "cnn", "prompt": "x" * 40000}, openai.APIStatusError, 413, "prompt"),
    ({"model": "cnn", "prompt": "a", "n": 0}, openai.BadRequestError, 400, "n"),
]


@pytest.mark.parametrize("body, error, status, param", BAD, ids=lambda v: str(v)[:40] if isinstance(v, dict) else None)
def test_bad_requests_are_openai_errors(served, body, error, status, param):
    server, _ = served
    with pytest.raises(error) as raised:
        server.client.completions.create(**body)
    assert raised.value.status_code == status
    assert raised.value.body["param"] == param and raised.value.body["type"] and raised.value.body["message"]


@pytest.mark.parametrize("content, status", [('{"model": "cnn", "prompt": "a", "temperature": NaN}', 400),
                                             ('{"model": "cnn", "prompt": ', 400), ("[1, 2]", 422),
                                             ('{"model": "cnn", "messages": "hi"}', 422)])
def test_bad_bodies_are_openai_errors(served, content, status):
    server, _ = served
    path = "/v1/chat/completions" if "messages" in content else "/v1/completions"
    code, body = server.request("POST", path, content)
    assert code == status
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert server.request("GET", "/health")[1]["status"] == "ok"  # still up


def test_32_concurrent_streams_each_equal_its_text_alone(served):
    server, runs = served
    prompts = [f"{name} said: the {thing}" for name in ("Anna", "Ben", "Cleo", "Dan") for thing in
               ("key", "map", "cup", "box", "hall", "garden", "is", "was")]
    with ThreadPoolExecutor(len(prompts)) as pool:
        results = list(pool.map(lambda p: stream_completion(server.client, model="transformer", prompt=p, max_tokens=200,
                                                            temperature=0), prompts))
    run = load_run(runs / "transformer")
    for prompt, (text, reasons, usage) in zip(prompts, results):
        alone = list(stream_ids(run.model, run.tokenizer.encode(prompt), 200, Sampling(temperature=0)))
        assert reasons == [(0, "length")] and usage.completion_tokens == 200
        assert text[0] == run.tokenizer.decode([int(t) for t in alone])


def test_a_client_that_goes_away_stops_only_its_own_generation(served):
    server, _ = served
    cancelled_before = server.request("GET", "/health")[1]["loaded"].get("cnn", {}).get("cancelled", 0)
    other = {}
    waiter = threading.Thread(target=lambda: other.update(text=server.client.completions.create(
        model="cnn", prompt="Ben said:", max_tokens=300, temperature=0).choices[0].text))
    with server.open_stream({"model": "cnn", "prompt": "Dan said:", "max_tokens": 4000, "stream": True}) as lines:
        assert next(line for line in lines if line.startswith("data: ")).startswith("data: {")
        waiter.start()
    waiter.join(timeout=120)
    assert len(other["text"]) > 0  # the other request finished
    for _ in range(1200):  # wait for the event: the closed stream's row leaves the batch, cancelled
        loaded = server.request("GET", "/health")[1]["loaded"]["cnn"]
        if loaded["running"] == 0:
            break
        threading.Event().wait(0.05)
    assert loaded == {"running": 0, "waiting": 0, "cancelled": cancelled_before + 1}  # not run to its 4000 tokens


def test_a_full_queue_answers_429(served):
    _, runs = served
    server = Server(runs / "cnn", "--max-batch", "1", "--max-queue", "0")
    try:
        with server.open_stream({"model": "cnn", "prompt": "Anna said:", "max_tokens": 4000, "stream": True}) as lines:
            assert next(line for line in lines if line.startswith("data: "))
            with pytest.raises(openai.RateLimitError) as raised:
                server.client.completions.create(model="cnn", prompt="Ben said:", max_tokens=5)
            assert raised.value.status_code == 429
        assert server.request("GET", "/health")[1]["status"] == "ok"
    finally:
        server.stop()
