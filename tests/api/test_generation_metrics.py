"""GET /metrics moves with generation: queue length, batch sizes, tokens, tokens per second and time to first
token, labelled by model name and version; the API served by uvicorn, requests over HTTP."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from api.main import create_app

WAIT_S = 60.0
MODEL = {"model_name": "expansion-policy-positive", "version": "v1"}


def scrape(base_url: str) -> dict[tuple[str, frozenset], float]:
    text = httpx.get(f"{base_url}/metrics", timeout=WAIT_S).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("ctrlgpt_generate_")
    }


def of(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset({**MODEL, **labels}.items())), 0.0)


@pytest.fixture(scope="module")
def served(v1):
    return v1.load()


@pytest.fixture(scope="module")
def base_url(api_settings, served, serve_api):
    settings = api_settings.model_copy(update={"batch_max_size": 4})
    app = create_app(settings, follow_updates=False, monitor_kafka=False)
    app.state.models.holder("positive").swap(served)
    with serve_api(settings, app) as url:
        yield url


def test_generation_figures_move_per_version_after_requests(base_url):
    before = scrape(base_url)
    answers = [
        httpx.post(f"{base_url}/v1/generate", json={"prompt": "The cat", "max_new_tokens": 5}, timeout=WAIT_S),
        httpx.post(
            f"{base_url}/v1/completions",
            json={"model": MODEL["model_name"], "prompt": "Kafka keeps", "max_tokens": 4, "n": 2, "seed": 1},
            timeout=WAIT_S,
        ),
    ]
    assert [answer.status_code for answer in answers] == [200, 200], [answer.text for answer in answers]
    tokens = answers[0].json()["completion_tokens"] + answers[1].json()["usage"]["completion_tokens"]
    after = scrape(base_url)

    def grew(name: str) -> float:
        return of(after, name) - of(before, name)

    assert grew("ctrlgpt_generate_tokens_total") == tokens
    assert grew("ctrlgpt_generate_time_to_first_token_seconds_count") == 3  # a request per choice
    assert grew("ctrlgpt_generate_time_to_first_token_seconds_sum") > 0
    steps = grew("ctrlgpt_generate_batch_size_count")
    assert steps >= 2  # at least the two calls' prompt runs
    assert grew("ctrlgpt_generate_batch_size_sum") == tokens  # each step gives each of its rows one token
    assert grew("ctrlgpt_generate_batch_tokens_per_second_count") == steps
    assert grew("ctrlgpt_generate_batch_tokens_per_second_sum") > 0
    assert of(after, "ctrlgpt_generate_queue_length") == 0


def test_the_queue_length_counts_requests_waiting_behind_a_running_batch(base_url, served):
    running = threading.Event()
    release = threading.Event()

    def hold(module, args, kwargs):
        running.set()
        release.wait(WAIT_S)

    body = {"prompt": "The cat", "max_new_tokens": 2, "temperature": 0}
    hook = served.model.register_forward_pre_hook(hold, with_kwargs=True)
    try:
        with ThreadPoolExecutor(3) as pool:
            first = pool.submit(httpx.post, f"{base_url}/v1/generate", json=body, timeout=WAIT_S)
            assert running.wait(WAIT_S)
            waiting = [pool.submit(httpx.post, f"{base_url}/v1/generate", json=body, timeout=WAIT_S) for _ in range(2)]
            deadline = time.monotonic() + WAIT_S
            while of(scrape(base_url), "ctrlgpt_generate_queue_length") != 2:
                assert time.monotonic() < deadline, "the two requests never showed as queued"
                time.sleep(0.05)
            release.set()
            assert [answer.result().status_code for answer in [first, *waiting]] == [200, 200, 200]
    finally:
        release.set()
        hook.remove()
    assert of(scrape(base_url), "ctrlgpt_generate_queue_length") == 0
