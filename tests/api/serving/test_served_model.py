"""The served reference: atomic swaps, in-flight requests finish on the version they started with."""

from __future__ import annotations

import gc
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor

from fastapi.testclient import TestClient

from api.main import create_app
from api.serving.served_model import ModelHolder

WAIT_S = 60  # generous bound on waiting for another thread; no timing is asserted


def test_swap_returns_the_replaced_version(v1, v2):
    holder = ModelHolder()
    assert holder.current is None
    assert holder.swap(v1.load()) is None
    assert holder.swap(v2.load()) == "v1"
    assert holder.current.version == "v2"


def test_in_flight_request_finishes_on_the_old_version_while_new_ones_get_the_new(api_settings, v1, v2):
    holder = ModelHolder()
    old = v1.load()
    new = v2.load()  # loaded (and warmed up) before the old one is held mid-generation
    holder.swap(old)
    generating, release = threading.Event(), threading.Event()

    def hold_generation(module, args):
        generating.set()
        release.wait(WAIT_S)

    hook = old.model.register_forward_pre_hook(hold_generation)
    old_ref = weakref.ref(old)
    del old
    app = create_app(api_settings, holder=holder, follow_updates=False)
    body = {"prompt": "The cat", "max_new_tokens": 4, "seed": 1}
    with TestClient(app) as client, ThreadPoolExecutor(max_workers=1) as pool:
        in_flight = pool.submit(client.post, "/generate", json=body)
        assert generating.wait(WAIT_S), "the first request never started generating"

        assert holder.swap(new) == "v1"
        assert client.get("/health").json()["model_version"] == "v2"  # answered while v1 still generates
        assert old_ref() is not None, "the in-flight request must still hold v1"

        release.set()
        first = in_flight.result(WAIT_S)
        assert first.status_code == 200, first.text
        assert first.json()["model_version"] == "v1"
        assert client.post("/generate", json=body).json()["model_version"] == "v2"

    hook.remove()
    del hook, first, in_flight
    gc.collect()
    assert old_ref() is None, "nothing should keep the replaced version alive"
