"""The try-it page in real headless Chromium against uvicorn on loopback, serving a real tiny model:
a person's thumbs up and their pick of two answers come back from Kafka as label events."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from live_server import chromium_page, free_port, serving
from playwright.sync_api import Page, expect
from topic_reader import read_records

from api.main import create_app
from api.serving.served_model import ModelHolder
from streams import bus, topics
from streams.records import LabelRecorded, PreferenceLabel, RatingLabel

pytestmark = pytest.mark.integration

TIMEOUT_MS = 60_000  # bound on the page's answers; no timing is asserted


@pytest.fixture(scope="module")
def base_url(settings, make_scored_version) -> Iterator[str]:
    holder = ModelHolder()
    holder.swap(make_scored_version("v-try", seed=12).load())
    port = free_port()
    app_settings = settings.model_copy(update={"api_port": port, "max_new_tokens_limit": 16})
    app = create_app(app_settings, holder=holder, follow_updates=False, monitor_kafka=False)
    with serving(app, port) as url:
        yield url


@pytest.fixture
def page(settings) -> Iterator[Page]:
    with chromium_page(settings, TIMEOUT_MS) as page:
        yield page


def test_a_rating_and_a_pick_become_label_events(settings, base_url: str, page: Page) -> None:
    bus.ensure_topics(settings, [topics.LABELS])
    prompt = f"The harbor {uuid.uuid4().hex[:10]}"
    page.goto(f"{base_url}/try")
    expect(page.locator("#target option")).to_have_count(len(settings.target_list))
    page.fill("#prompt", prompt)
    page.fill("#max_new_tokens", "8")

    generated = []  # the API's answers to the page, in order
    page.on("response", lambda response: generated.append(response) if response.url.endswith("/v1/generate") else None)
    page.click("#one")
    expect(page.locator("#single")).to_be_visible()
    expect(page.locator("#single-version")).to_have_text("v-try")
    answer = page.locator("#single-text").text_content()
    [single] = [response.json() for response in generated]
    # The API's text: the prompt as the version was shown it, and its completion, decoded together.
    assert answer == single["text"] and answer.startswith(prompt)
    page.click("#thumbs-up")
    expect(page.locator("#thanks")).to_contain_text("recorded as api:try-")

    for _ in range(3):  # two sampled answers of 8 tokens are rarely the same; the page refuses to pick then
        page.click("#two")
        expect(page.locator("#pair")).to_be_visible()
        expect(page.locator("#two")).to_be_enabled()
        a, b = page.locator("#answer-a").text_content(), page.locator("#answer-b").text_content()
        if a != b:
            break
    assert a != b
    first, second = (response.json() for response in generated[-2:])
    assert (a, b) == (first["text"], second["text"])
    expect(page.locator("#pair-version")).to_have_text("v-try")
    page.click("#pick-b")
    expect(page.locator("#thanks")).to_contain_text("recorded as api:try-")

    events = read_records(
        settings,
        topics.LABELS,
        until=lambda found: len(found) >= 2,
        keep=lambda e: isinstance(e, LabelRecorded) and getattr(e.label, "prompt", None) == prompt,
        timeout=TIMEOUT_MS / 1000,
    )
    [rating] = [e for e in events if isinstance(e.label, RatingLabel)]
    [preference] = [e for e in events if isinstance(e.label, PreferenceLabel)]
    assert (rating.label.rating, rating.label.target, rating.model_version) == (
        "up",
        settings.target_sentiment,
        "v-try",
    )
    assert rating.label.completion == single["completion"]
    assert (preference.label.chosen, preference.label.rejected) == (second["completion"], first["completion"])
    assert preference.model_version == "v-try"
    for event in (rating, preference):
        assert event.source == "api" and event.annotator.startswith("web-")
        assert event.label_id.startswith("api:try-")
    assert rating.label_id != preference.label_id
