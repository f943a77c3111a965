"""The OpenAI completions wire format of ``zoo serve``: request errors, response bodies,
response headers, and the server-sent events of a stream (no Ray, no model: plain data).

Errors are OpenAI-shaped ``{"error": {"message", "type", "code"}}``: 400 for a malformed
request, 404 for a model the deployment does not serve, 500 for an adapter whose blob fails
verification (or that breaks decoding): each for the request that named it only.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from zoo.errors import AmbiguousRefError, AuthError, ForbiddenError, IntegrityError, NotFoundError, ZooError


@dataclass(frozen=True)
class Prepared:
    """A parsed completion request: what it names, and the batch items it becomes."""

    model: str
    adapter_id: str | None
    digest: str | None
    items: list[tuple[list[int], Any, Any]]  # (prompt ids, adapter or None, SamplingParams)
    stream: bool


class RequestError(ZooError, ValueError):
    """A completion request is malformed (HTTP 400)."""

    exit_code = 2


def completion_body(prepared: Prepared, completions: list[Any]) -> dict[str, Any]:
    """The OpenAI ``text_completion`` object (plus which adapter answered)."""
    prompt_tokens = sum(c.prompt_tokens for c in completions)
    done_tokens = sum(len(c.token_ids) for c in completions)
    return {
        "id": f"cmpl-{uuid.uuid4().hex[:24]}", "object": "text_completion",
        "created": int(time.time()), "model": prepared.model,
        "choices": [{"index": i, "text": c.text or "", "finish_reason": c.finish_reason,
                     "logprobs": None} for i, c in enumerate(completions)],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": done_tokens,
                  "total_tokens": prompt_tokens + done_tokens},
        "zoo": {"adapter_id": prepared.adapter_id, "digest": prepared.digest},
    }


class DeltaText:
    """The text of one streaming choice, sent as deltas while tokens arrive: held back by the
    longest stop string less one character (the final text is cut before a stop), and never
    sent twice."""

    def __init__(self, tokenizer: Any, stops: tuple[str, ...]) -> None:
        self.tokenizer = tokenizer
        self.stops = stops
        self.hold = max((len(x) for x in stops), default=1) - 1
        self.tokens: list[int] = []
        self.sent = ""

    def add(self, token: int) -> str:
        self.tokens.append(token)
        text = self.tokenizer.decode(self.tokens, skip_special_tokens=True)
        cuts = [text.index(x) for x in self.stops if x in text]
        # the stop itself arrived: the text ends before it; else hold back a possible start
        safe = text[:min(cuts)] if cuts else text[:len(text) - self.hold]
        if len(safe) > len(self.sent) and safe.startswith(self.sent):
            delta, self.sent = safe[len(self.sent):], safe
            return delta
        return ""

    def finish(self, final: str) -> str:
        rest = final[len(self.sent):] if final.startswith(self.sent) else ""
        self.sent = final
        return rest


def sse(data: Any) -> str:
    return f"data: {json.dumps(data)}\n\n"


def chunk(head: dict[str, Any], index: int, text: str, finish: str | None) -> dict[str, Any]:
    """One OpenAI streaming ``text_completion`` chunk."""
    return {**head, "choices": [{"index": index, "text": text, "finish_reason": finish,
                                 "logprobs": None}]}


def error_status(exc: BaseException) -> tuple[int, str]:
    """(HTTP status, OpenAI error type) of a request's failure."""
    if isinstance(exc, RequestError):
        return 400, "invalid_request_error"
    if isinstance(exc, ForbiddenError):
        return 403, "permission_error"
    if isinstance(exc, AuthError):
        return 401, "authentication_error"
    if isinstance(exc, NotFoundError | AmbiguousRefError):
        return 404, "model_not_found"
    if isinstance(exc, IntegrityError):
        return 500, "adapter_integrity_error"
    return 500, "server_error"


def headers_of(prepared: Prepared) -> dict[str, str]:
    return {"x-zoo-adapter-id": prepared.adapter_id or "", "x-zoo-adapter-digest":
            prepared.digest or "", "x-zoo-model": prepared.model}


async def stream_events(prepared: Prepared, tokenizer: Any,
                        batched: Callable[[tuple[Any, ...]], Awaitable[Any]]) -> AsyncIterator[str]:
    """Submit the request's prompts with a token sink each and yield SSE events: a delta per
    decoded token, then one event per choice with its finish reason, then ``[DONE]``."""
    loop = asyncio.get_running_loop()
    tokens: asyncio.Queue[tuple[int, int] | None] = asyncio.Queue()
    items = [(*item, lambda t, i=i: loop.call_soon_threadsafe(tokens.put_nowait, (i, t)))
             for i, item in enumerate(prepared.items)]
    task = asyncio.ensure_future(asyncio.gather(*(batched(it) for it in items)))
    task.add_done_callback(lambda _: tokens.put_nowait(None))  # after every queued token
    head = {"id": f"cmpl-{uuid.uuid4().hex[:24]}", "object": "text_completion",
            "created": int(time.time()), "model": prepared.model,
            "zoo": {"adapter_id": prepared.adapter_id, "digest": prepared.digest}}
    texts = [DeltaText(tokenizer, item[2].stop) for item in prepared.items]
    while (got := await tokens.get()) is not None:
        delta = texts[got[0]].add(got[1])
        if delta:
            yield sse(chunk(head, got[0], delta, None))
    try:
        done = task.result()
        failed = [d for d in done if isinstance(d, BaseException)]
        if failed:
            raise failed[0]
    except Exception as exc:  # noqa: BLE001 - the status line is already sent
        yield sse(error_body(exc))
        return
    for i, completion in enumerate(done):
        yield sse(chunk(head, i, texts[i].finish(completion.text or ""), completion.finish_reason))
    yield "data: [DONE]\n\n"


def error_body(exc: BaseException) -> dict[str, Any]:
    status, kind = error_status(exc)
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return {"error": {"message": message, "type": kind, "code": status}}
