"""Back-pressure and slow clients, on the API served by uvicorn as `ctrlgpt api` serves it.

A burst over the generation queue's bound is answered 429 with Retry-After at once (on
every generating route, OpenAI's shape on the OpenAI routes), the admitted requests
finish, and the API stays healthy. A client that sends its head or its body too slowly
is cut off.
"""

from __future__ import annotations

import asyncio
import select
import socket
import threading
import time

import httpx
import pytest

from api.main import create_app
from api.serving.served_model import ModelHolder

WAIT_S = 60.0  # bound on waiting for answers; no timing is asserted
QUEUE_MAX = 2
CHAT_TEMPLATE = "{% for message in messages %}{{ message.content }}\n{% endfor %}"


@pytest.fixture()
def held_model(v1):
    """v1 with a chat template, whose generations wait at their first forward pass until `release` is set."""
    served = v1.load()
    served.tokenizer.chat_template = CHAT_TEMPLATE
    running, release = threading.Event(), threading.Event()

    def hold(module, args, kwargs):
        running.set()
        release.wait(WAIT_S)

    hook = served.model.register_forward_pre_hook(hold, with_kwargs=True)
    yield served, running, release
    release.set()
    hook.remove()


BURST = [  # (path, body) of each request in the burst: every generating route, plain and streamed
    ("/v1/generate", {"prompt": "The cat", "max_new_tokens": 4}),
    ("/v1/generate", {"prompt": "The cat", "max_new_tokens": 4, "stream": True}),
    ("/v1/completions", {"model": "expansion-policy-positive", "prompt": "The cat", "max_tokens": 4}),
    ("/v1/completions", {"model": "expansion-policy-positive", "prompt": "The cat", "max_tokens": 4, "stream": True}),
    (
        "/v1/chat/completions",
        {"model": "expansion-policy-positive", "messages": [{"role": "user", "content": "The cat"}], "max_tokens": 4},
    ),
] * 4


def test_a_burst_over_the_queue_bound_gets_429_with_retry_after_and_the_api_stays_healthy(
    api_settings, held_model, serve_api
):
    served, running, release = held_model
    settings = api_settings.model_copy(update={"generate_queue_max": QUEUE_MAX, "batch_max_size": 1})
    holder = ModelHolder()
    holder.swap(served)

    async def burst(url: str) -> tuple[httpx.Response, list[httpx.Response]]:
        async with httpx.AsyncClient(base_url=url, timeout=WAIT_S) as client:
            first = asyncio.create_task(client.post("/v1/generate", json={"prompt": "The cat", "max_new_tokens": 4}))
            # The first request holds the worker: the burst meets a busy model and fills its queue.
            assert await asyncio.to_thread(running.wait, WAIT_S), "the first request never started"
            tasks = [asyncio.create_task(client.post(path, json=body)) for path, body in BURST]
            expected_refusals = len(BURST) - QUEUE_MAX
            deadline = time.monotonic() + WAIT_S
            while sum(task.done() and task.result().status_code == 429 for task in tasks) < expected_refusals:
                assert time.monotonic() < deadline, "the burst was not refused while the model was busy"
                await asyncio.sleep(0.05)
            release.set()
            return await first, list(await asyncio.gather(*tasks))

    with serve_api(settings, create_app(settings, holder=holder, follow_updates=False)) as url:
        first, answers = asyncio.run(burst(url))
        assert first.status_code == 200, first.text
        statuses = [answer.status_code for answer in answers]
        assert sorted(set(statuses)) == [200, 429], statuses
        assert statuses.count(200) == QUEUE_MAX
        for (path, _body), answer in zip(BURST, answers):
            if answer.status_code == 200:
                assert answer.text  # a streamed answer carries its events, a plain one its JSON
                continue
            assert int(answer.headers["retry-after"]) >= 1
            error = answer.json()
            if path == "/v1/generate":
                assert "queue" in error["detail"]
            else:
                assert error["error"]["type"] == "rate_limit_error", error
                assert error["error"]["code"] == "rate_limit_exceeded"
        refused_paths = {path for (path, _), answer in zip(BURST, answers) if answer.status_code == 429}
        assert refused_paths == {path for path, _ in BURST}

        health = httpx.get(f"{url}/health", timeout=WAIT_S)
        assert health.status_code == 200 and health.json()["status"] == "ok"
        later = httpx.post(f"{url}/v1/generate", json={"prompt": "The cat", "max_new_tokens": 4}, timeout=WAIT_S)
        assert later.status_code == 200, later.text
        assert later.json()["model_version"] == "v1"


def _read_until_closed(connection: socket.socket) -> bytes:
    received = b""
    while chunk := connection.recv(4096):
        received += chunk
    return received


def test_a_client_sending_its_headers_byte_by_byte_is_cut_off(api_settings, v1, serve_api):
    settings = api_settings.model_copy(update={"api_header_timeout_s": 1.0})
    holder = ModelHolder()
    holder.swap(v1.load())
    head = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 10_000
    with serve_api(settings, create_app(settings, holder=holder, follow_updates=False)) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) as connection:
            sent = 0
            try:
                for byte in head:  # 10 kB at 20 bytes a second would take minutes: the server must answer first
                    if select.select([connection], [], [], 0)[0]:
                        break  # the server answered: stop writing, so its answer is not lost to a reset
                    connection.sendall(bytes([byte]))
                    sent += 1
                    time.sleep(0.05)
            except (BrokenPipeError, ConnectionResetError):
                pass
            answer = _read_until_closed(connection)
        assert sent < len(head), "the server read a whole head sent byte by byte"
        assert answer.startswith(b"HTTP/1.1 408"), answer
        # Another client is still served.
        assert httpx.get(f"{url}/health", timeout=WAIT_S).status_code == 200


def test_a_body_that_does_not_arrive_gets_408_and_the_connection_is_closed(api_settings, v1, serve_api):
    settings = api_settings.model_copy(update={"api_body_timeout_s": 1.0})
    holder = ModelHolder()
    holder.swap(v1.load())
    with serve_api(settings, create_app(settings, holder=holder, follow_updates=False)) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) as connection:
            connection.sendall(
                b"POST /v1/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b'Content-Length: 100\r\n\r\n{"prompt": '
            )
            answer = _read_until_closed(connection)  # ends only when the server closes the connection
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert b"request body not received" in answer
