"""The one server-sent-events helper /generate and the OpenAI-compatible endpoints share."""

from __future__ import annotations

from api.sse import STREAM_HEADERS, event_stream, sse_event


def test_an_event_is_its_data_as_json_under_its_name():
    assert sse_event({"text": "hé"}, event="token") == b'event: token\ndata: {"text": "h\\u00e9"}\n\n'
    assert sse_event({"choices": []}) == b'data: {"choices": []}\n\n'


async def _events():
    yield b"data: {}\n\n"


def test_a_stream_is_neither_cached_nor_buffered_by_a_proxy():
    response = event_stream(_events())
    assert response.media_type == "text/event-stream"
    assert {name: response.headers[name] for name in STREAM_HEADERS} == STREAM_HEADERS
