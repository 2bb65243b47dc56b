"""OpenAI's streaming: every choice's chunks as server-sent events, as they come, then `data: [DONE]`."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from api.routes.openai_schemas import finish_reason, usage
from api.serving.batching import Delta, Event
from api.serving.generation import Completion
from api.sse import sse_event

DONE = b"data: [DONE]\n\n"


class Call:
    """What every chunk or answer of one request repeats."""

    def __init__(self, model: str, version: str, kind: str = "text_completion") -> None:
        prefix = "chatcmpl" if kind == "chat.completion" else "cmpl"
        self.id = f"{prefix}-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.model = model
        self.version = version
        self.kind = kind

    def chunk(self, choices: list[dict], **extra: Any) -> bytes:
        body = {
            "id": self.id,
            "object": self.kind if self.kind == "text_completion" else "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": self.version,
            "choices": choices,
            **extra,
        }
        return sse_event(body)


async def close_all(streams: list[AsyncIterator[Event]]) -> None:
    for events in streams:
        await events.aclose()


async def merged(streams: list[AsyncIterator[Event]]) -> AsyncIterator[tuple[int, Event]]:
    """The events of every choice as they come, tagged with the choice's index."""
    queue: asyncio.Queue[tuple[int, Event | BaseException | None]] = asyncio.Queue()

    async def pump(index: int, events: AsyncIterator[Event]) -> None:
        try:
            async for event in events:
                await queue.put((index, event))
        except Exception as exc:
            await queue.put((index, exc))
        await queue.put((index, None))

    tasks = [asyncio.create_task(pump(index, events)) for index, events in enumerate(streams)]
    try:
        running = len(tasks)
        while running:
            index, item = await queue.get()
            if item is None:
                running -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield index, item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await close_all(streams)


async def completion_chunks(
    call: Call, streams: list[AsyncIterator[Event]], prefixes: list[str], *, n: int, include_usage: bool
) -> AsyncIterator[bytes]:
    for index, prefix in enumerate(prefixes):
        if prefix:
            yield call.chunk([{"text": prefix, "index": index, "logprobs": None, "finish_reason": None}])
    results: dict[int, Completion] = {}
    async for index, event in merged(streams):
        if isinstance(event, Delta):
            yield call.chunk([{"text": event.text, "index": index, "logprobs": None, "finish_reason": None}])
        elif isinstance(event, Completion):
            results[index] = event
            yield call.chunk([{"text": "", "index": index, "logprobs": None, "finish_reason": finish_reason(event)}])
    if include_usage:
        yield call.chunk([], usage=usage([results[index] for index in sorted(results)], n).model_dump())
    yield DONE


async def chat_chunks(
    call: Call, streams: list[AsyncIterator[Event]], *, n: int, include_usage: bool
) -> AsyncIterator[bytes]:
    for index in range(len(streams)):
        role = {"role": "assistant", "content": ""}
        yield call.chunk([{"index": index, "delta": role, "logprobs": None, "finish_reason": None}])
    results: dict[int, Completion] = {}
    async for index, event in merged(streams):
        if isinstance(event, Delta):
            yield call.chunk(
                [{"index": index, "delta": {"content": event.text}, "logprobs": None, "finish_reason": None}]
            )
        elif isinstance(event, Completion):
            results[index] = event
            yield call.chunk([{"index": index, "delta": {}, "logprobs": None, "finish_reason": finish_reason(event)}])
    if include_usage:
        yield call.chunk([], usage=usage([results[index] for index in sorted(results)], n).model_dump())
    yield DONE
