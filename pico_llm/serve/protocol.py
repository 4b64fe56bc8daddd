"""The OpenAI API's requests and responses, checked field by field.

A bad request is an `ApiError` with the status and the OpenAI-shaped body every OpenAI client turns
into the right exception: 400 for a bad value (NaN, out of range), 422 for a wrong type, 404 for an
unknown model, 413 for a prompt over the size limit, 429 when the queue is full. Nothing a client
sends can cause a 500.

Chat messages go through a plain-text template, since these are base models:

    {system message}\\n\\n            (if there is one)
    User: {user message}\\n
    Assistant: {assistant message}\\n
    ...
    Assistant:

and the reply stops where the model starts the next "\\nUser:" turn.
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass, field

from ..errors import PicoError
from ..inference.generation import MAX_SAMPLES, Sampling, encode_prompt

MAX_TOKENS = 4096
MAX_PROMPT_TOKENS = 32768
MAX_BODY_BYTES = 1 << 20
MAX_N = 16
CHAT_ROLES = ("system", "user", "assistant")
CHAT_STOP = "\nUser:"


class ApiError(Exception):
    """An error a client should see: HTTP status, message, the parameter at fault, an error code."""

    TYPES = {400: "invalid_request_error", 404: "invalid_request_error", 413: "invalid_request_error",
             422: "invalid_request_error", 429: "rate_limit_exceeded", 500: "server_error"}

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.TYPES.get(self.status, "invalid_request_error"),
                          "param": self.param, "code": self.code}}


def _typed(body: dict, name: str, kinds: tuple, default=None, describe: str = ""):
    """`body[name]` if it has one of `kinds` (bool is not a number here), else a 422 naming the field."""
    value = body.get(name, default)
    if value is None:
        return default
    wrong_bool = isinstance(value, bool) and bool not in kinds
    if wrong_bool or not isinstance(value, kinds):
        raise ApiError(422, f"'{name}' must be {describe or ' or '.join(k.__name__ for k in kinds)}, got {value!r}",
                       name, "invalid_type")
    return value


def _in_range(name: str, value, low=None, high=None) -> None:
    if value is None:
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise ApiError(400, f"'{name}' must be a finite number, got {value}", name, "invalid_value")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ApiError(400, f"'{name}' must be between {low} and {high}, got {value}", name, "invalid_value")


@dataclass
class GenerationRequest:
    """What /v1/completions and /v1/chat/completions share, checked."""

    model: str
    prompts: list[list[int]]
    max_tokens: int
    sampling: Sampling
    stop: list[str]
    n: int = 1
    stream: bool = False
    include_usage: bool = False
    chat: bool = False
    created: int = field(default_factory=lambda: int(time.time()))
    id: str = ""

    def __post_init__(self) -> None:
        self.id = ("chatcmpl-" if self.chat else "cmpl-") + uuid.uuid4().hex[:24]

    @property
    def prompt_tokens(self) -> int:
        return sum(len(prompt) for prompt in self.prompts) * self.n


def _sampling(body: dict) -> Sampling:
    fields = {
        "temperature": _typed(body, "temperature", (int, float), 1.0, "a number"),
        "top_p": _typed(body, "top_p", (int, float), None, "a number"),
        "top_k": _typed(body, "top_k", (int,), None, "an integer"),
        "repetition_penalty": _typed(body, "repetition_penalty", (int, float), 1.0, "a number"),
        "seed": _typed(body, "seed", (int,), None, "an integer"),
    }
    for name, value in fields.items():
        _in_range(name, value)
    try:
        return Sampling(**fields)
    except PicoError as err:
        param = next((name for name in fields if f"`{name}`" in str(err)), None)
        raise ApiError(400, str(err).replace("`", "'"), param, "invalid_value") from None


def _stop(body: dict, extra: list[str]) -> list[str]:
    stop = _typed(body, "stop", (str, list), None, "a string or a list of strings")
    stop = [stop] if isinstance(stop, str) else list(stop or [])
    if not all(isinstance(s, str) for s in stop):
        raise ApiError(422, "'stop' must be a string or a list of strings", "stop", "invalid_type")
    if len(stop) > 4:
        raise ApiError(400, f"'stop' takes at most 4 strings, got {len(stop)}", "stop", "invalid_value")
    return stop + extra


def _common(body: dict, prompts: list[list[int]], chat: bool, default_max_tokens: int) -> GenerationRequest:
    max_tokens = _typed(body, "max_tokens", (int,), default_max_tokens, "an integer")
    _in_range("max_tokens", max_tokens, 1, MAX_TOKENS)
    n = _typed(body, "n", (int,), 1, "an integer")
    _in_range("n", n, 1, MAX_N)
    if len(prompts) * n > MAX_SAMPLES:
        raise ApiError(400, f"at most {MAX_SAMPLES} choices a request, got {len(prompts) * n}", "n", "invalid_value")
    if sum(map(len, prompts)) > MAX_PROMPT_TOKENS:
        raise ApiError(413, f"the prompt has {sum(map(len, prompts))} tokens, more than the limit of {MAX_PROMPT_TOKENS}",
                       "prompt" if not chat else "messages", "prompt_too_long")
    options = _typed(body, "stream_options", (dict,), {}, "an object")
    include_usage = _typed(options, "include_usage", (bool,), False, "true or false")
    return GenerationRequest(
        model=_typed(body, "model", (str,), None, "a string"), prompts=prompts, max_tokens=max_tokens,
        sampling=_sampling(body), stop=_stop(body, [CHAT_STOP] if chat else []), n=n,
        stream=_typed(body, "stream", (bool,), False, "true or false"), include_usage=include_usage, chat=chat,
    )


def _encode(tokenizer, text: str, param: str) -> list[int]:
    try:
        return encode_prompt(tokenizer, text)
    except PicoError as err:
        raise ApiError(400, str(err).replace("`", "'"), param, "invalid_prompt") from None


def completion_request(body: dict, tokenizer, vocab_size: int) -> GenerationRequest:
    """POST /v1/completions: `prompt` a string, a list of strings, or token ids (a list, or a list of lists)."""
    prompt = body.get("prompt", "")
    if isinstance(prompt, str):
        prompts = [_encode(tokenizer, prompt, "prompt")]
    elif isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        prompts = [_encode(tokenizer, p, "prompt") for p in prompt]
    elif isinstance(prompt, list) and prompt and all(isinstance(p, int) and not isinstance(p, bool) for p in prompt):
        prompts = [prompt]
    elif isinstance(prompt, list) and prompt and all(isinstance(p, list) and p and all(isinstance(t, int) for t in p) for p in prompt):
        prompts = prompt
    else:
        raise ApiError(422, "'prompt' must be a string, a list of strings, or token ids", "prompt", "invalid_type")
    if any(not 0 <= token < vocab_size for p in prompts for token in p):
        raise ApiError(400, f"token ids must be in [0, {vocab_size})", "prompt", "invalid_value")
    return _common(body, prompts, chat=False, default_max_tokens=16)


def chat_prompt(messages: list[dict]) -> str:
    """The plain-text template of the module docstring."""
    parts = []
    for message in messages:
        if message["role"] == "system":
            parts.append(f"{message['content']}\n\n")
        else:
            parts.append(f"{message['role'].capitalize()}: {message['content']}\n")
    return "".join(parts) + "Assistant:"


def chat_request(body: dict, tokenizer) -> GenerationRequest:
    """POST /v1/chat/completions: `messages` [{role, content}] rendered through the template."""
    messages = _typed(body, "messages", (list,), None, "a list of messages")
    if not messages:
        raise ApiError(400 if messages == [] else 422, "'messages' must be a non-empty list of {role, content}",
                       "messages", "invalid_value")
    for message in messages:
        if not isinstance(message, dict) or message.get("role") not in CHAT_ROLES or not isinstance(message.get("content"), str):
            raise ApiError(422, f"each message needs a role ({', '.join(CHAT_ROLES)}) and a string content, got {message!r}",
                           "messages", "invalid_type")
    return _common(body, [_encode(tokenizer, chat_prompt(messages), "messages")], chat=True, default_max_tokens=256)


def usage(request: GenerationRequest, completion_tokens: int) -> dict:
    return {"prompt_tokens": request.prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": request.prompt_tokens + completion_tokens}


def response_choice(request: GenerationRequest, index: int, text: str, finish_reason: str) -> dict:
    """A choice of a whole (not streamed) response."""
    if request.chat:
        return {"index": index, "message": {"role": "assistant", "content": text}, "finish_reason": finish_reason}
    return {"index": index, "text": text, "logprobs": None, "finish_reason": finish_reason}


def chunk_choice(request: GenerationRequest, index: int, text: str, finish_reason: str | None, first: bool = False) -> dict:
    """A choice of a stream chunk; a chat stream's first chunk of a choice carries the role."""
    if not request.chat:
        return {"index": index, "text": text, "logprobs": None, "finish_reason": finish_reason}
    delta = {"role": "assistant", "content": text} if first else ({"content": text} if text else {})
    return {"index": index, "delta": delta, "finish_reason": finish_reason}


def envelope(request: GenerationRequest, choices: list[dict], chunk: bool, usage_: dict | None = None) -> dict:
    kind = ("chat.completion.chunk" if chunk else "chat.completion") if request.chat else "text_completion"
    body = {"id": request.id, "object": kind, "created": request.created, "model": request.model, "choices": choices}
    if not chunk or request.include_usage:
        body["usage"] = usage_
    return body
