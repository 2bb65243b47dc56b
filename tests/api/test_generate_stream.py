"""POST /v1/generate as server-sent events: metadata, token deltas, done; a client that leaves stops the generation."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from structlog.testing import capture_logs

from api.main import create_app
from api.serving.served_model import ModelHolder
from deploy.processes import wait_until

WAIT_S = 60.0  # generous bound on waiting for the server; no timing is asserted


def events_of(body: str) -> list[tuple[str, dict]]:
    """(event, data) of each server-sent event in `body`."""
    parsed = []
    for block in body.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        parsed.append((fields["event"], json.loads(fields["data"])))
    return parsed


@pytest.fixture(scope="module")
def app(api_settings, v1) -> FastAPI:
    holder = ModelHolder()
    holder.swap(v1.load())
    return create_app(api_settings, holder=holder, follow_updates=False)


@pytest.fixture(scope="module")
def client(app):
    with TestClient(app) as client:
        yield client


@pytest.mark.parametrize(("body", "headers"), [({"stream": True}, {}), ({}, {"accept": "text/event-stream"})])
def test_events_are_metadata_then_token_deltas_then_done_with_usage(client, body, headers):
    request = {"prompt": "The cat", "max_new_tokens": 8, "seed": 4, **body}
    response = client.post("/v1/generate", json=request, headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = events_of(response.text)
    (first, metadata), (last, done) = events[0], events[-1]
    assert first == "metadata"
    assert (metadata["model_version"], metadata["target"], metadata["model_name"]) == (
        "v1",
        "positive",
        "expansion-policy-positive",
    )
    assert last == "done"
    assert {name for name, _ in events[1:-1]} <= {"token"}
    assert "".join(data["text"] for _, data in events[1:-1]) == done["completion"]
    assert done["usage"] == {
        "prompt_tokens": metadata["prompt_tokens"],
        "completion_tokens": done["usage"]["completion_tokens"],
    }
    assert 1 <= done["usage"]["completion_tokens"] <= 8
    plain = client.post("/v1/generate", json={"prompt": "The cat", "max_new_tokens": 8, "seed": 4}).json()
    assert plain["completion"] == done["completion"]


def test_a_prompt_too_long_is_a_422_not_a_stream(client):
    response = client.post(
        "/v1/generate", json={"prompt": " ".join(["cat"] * 50), "max_new_tokens": 16, "stream": True}
    )
    assert response.status_code == 422
    assert "context" in response.json()["detail"]


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """`app` under uvicorn on a free loopback port, in a thread."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, what="uvicorn started", timeout=WAIT_S)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(WAIT_S)
        listener.close()


def test_a_client_that_disconnects_stops_its_generation(api_settings, v1):
    served = v1.load()
    holder = ModelHolder()
    holder.swap(served)
    release = threading.Event()
    steps: list[int] = []  # tokens fed to each forward pass: the prompt's at a generation's start, then 1

    def hold(module, args, kwargs):
        steps.append(kwargs["input_ids"].shape[1])
        release.wait(WAIT_S)  # the streamed generation waits here until its client has gone

    hook = served.model.register_forward_pre_hook(hold, with_kwargs=True)
    request = {"prompt": "The cat", "max_new_tokens": 16, "temperature": 0}
    try:
        with serving(create_app(api_settings, holder=holder, follow_updates=False)) as url, capture_logs() as logs:
            with httpx.Client(base_url=url, timeout=WAIT_S) as http:
                with http.stream("POST", "/v1/generate", json={**request, "stream": True}) as response:
                    first = next(response.iter_lines())
                    assert first == "event: metadata"
                # The response closed unread: the server sees the client leave and ends the request.
                wait_until(
                    lambda: any(
                        line.get("event") == "http.request" and line.get("path") == "/v1/generate" for line in logs
                    ),
                    what="the streamed request ended",
                    timeout=WAIT_S,
                )
                release.set()
                after = http.post("/v1/generate", json=request)  # runs once the left generation has ended
        assert after.status_code == 200
    finally:
        release.set()
        hook.remove()
    starts = [index for index, fed in enumerate(steps) if fed > 1]
    assert len(starts) == 2
    assert starts[1] - starts[0] < len(steps) - starts[1] == 16
