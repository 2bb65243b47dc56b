"""Server-sent events, as /generate and the OpenAI-compatible endpoints stream them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterable

from fastapi.sse import EventSourceResponse, format_sse_event

# No cache may hold the stream back, nor a proxy buffer it (nginx honours X-Accel-Buffering).
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def sse_event(data: dict, *, event: str | None = None) -> bytes:
    """One event: `data` as JSON, under `event` if given."""
    return format_sse_event(data_str=json.dumps(data), event=event)


def event_stream(events: AsyncIterable[bytes]) -> EventSourceResponse:
    return EventSourceResponse(events, headers=STREAM_HEADERS)
