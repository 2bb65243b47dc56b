"""The operator dashboard in real headless Chromium against uvicorn on loopback and the real broker:
it loads, shows a test group's lag and a training run published to Kafka, and updates without a reload."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka import Producer, TopicPartition
from live_server import chromium_page, free_port, serving
from playwright.sync_api import Page, expect

from api.main import create_app
from streams import bus, topics
from streams.records import DeadLetter, ModelPromoted, TrainingRunProgressed
from streams.topics import Topic

pytestmark = pytest.mark.integration

TIMEOUT_MS = 60_000  # bound on waiting for the page to show data; no timing is asserted
RUN = uuid.uuid4().hex
GROUP = f"test-dash-{RUN}"


@pytest.fixture(scope="module")
def base_url(settings) -> Iterator[str]:
    port = free_port()
    app_settings = settings.model_copy(
        update={"api_port": port, "ops_groups": f"^{GROUP}$", "ops_sample_interval_s": 1.0}
    )
    app = create_app(app_settings, follow_updates=False, monitor_kafka=True)
    with serving(app, port) as url:
        yield url


@pytest.fixture
def page(settings) -> Iterator[Page]:
    with chromium_page(settings, TIMEOUT_MS) as page:
        yield page


def commit(settings, topic: Topic, offset: int) -> None:
    consumer = bus.make_consumer(settings, GROUP)
    consumer.commit(offsets=[TopicPartition(topic.name, 0, offset)], asynchronous=False)
    consumer.close()


def publish_progress(settings, **fields) -> None:
    producer = bus.make_producer(settings)
    bus.publish(producer, topics.TRAINING_RUNS, TrainingRunProgressed(run_id=f"test-dash-{RUN}", **fields))
    bus.flush_or_raise(producer)


def announcement(model: str, number: int, judge_rate: float) -> ModelPromoted:
    """A model update as the dashboard reads it (the test app follows no updates, so none is loaded)."""
    return ModelPromoted(
        model_name=model,
        version=f"v{number:04d}-test",
        uri=f"s3://nowhere/{model}/v{number:04d}-test",
        manifest_sha256="0" * 64,
        metrics={"judge_target_rate": judge_rate, "candidate_reward_mean": float(number)},
    )


def test_dashboard_shows_live_lag_and_training_runs(settings, base_url: str, page: Page) -> None:
    topic = Topic(f"ctrlgpt.test.dashboard.{RUN}", DeadLetter, key="key", partitions=1)
    bus.ensure_topics(settings, [topic, topics.TRAINING_RUNS])
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap})
    for i in range(5):
        producer.produce(topic.name, value=b"record %d" % i)
    assert producer.flush(30) == 0
    commit(settings, topic, 2)

    page.goto(f"{base_url}/dashboard")
    row = page.locator(f'#groups tr[data-key="{GROUP}"]')
    expect(row.locator("td").nth(5)).to_have_text("3")
    expect(page.locator("#kafka")).to_have_text("Kafka: up")
    expect(page.locator(f'#lag-chart polyline[data-series="{GROUP}"]')).to_have_count(1)
    expect(page.locator("#lag-chart")).to_have_attribute("data-scale", "log")
    page.locator("#lag-log").uncheck()
    expect(page.locator("#lag-chart")).to_have_attribute("data-scale", "linear")
    page.evaluate("window.__loadedOnce = true")  # gone if the page reloads

    # The group catches up: the same row, without a reload, shows no lag and status OK.
    commit(settings, topic, 5)
    expect(row.locator("td").nth(5)).to_have_text("0")
    expect(row.locator("td").nth(1)).to_have_text("OK")

    # A training run published to Kafka appears, with its loss, reward and KL curves by step, then finishes.
    run_id = f"test-dash-{RUN}"
    for step, loss in ((10, 3.2), (20, 2.9), (30, 2.5)):
        publish_progress(settings, stage="sft", step=step, total_steps=30, loss=loss)
    publish_progress(settings, stage="reward", step=5, total_steps=5, loss=0.6)
    publish_progress(settings, stage="ppo", step=1, total_steps=2, reward=0.2, kl=0.01, message="test event")
    publish_progress(settings, stage="ppo", step=2, total_steps=2, reward=0.5, kl=0.03, message="test event")
    run_row = page.locator(f'#runs tr[data-key="{run_id}"]')
    expect(run_row.locator("td").nth(1)).to_have_text("ppo")
    run_row.click()
    expect(page.locator("#curve-run")).to_have_text(run_id)
    reward_line = page.locator('#reward-chart polyline[data-series="reward"]')
    expect(reward_line).to_have_attribute("points", re.compile(r"^\S+ \S+$"))  # both logged steps
    expect(page.locator('#kl-chart polyline[data-series="KL"]')).to_have_count(1)
    sft_loss = page.locator('#loss-chart polyline[data-series="SFT loss"]')
    expect(sft_loss).to_have_attribute("points", re.compile(r"^\S+ \S+ \S+$"))  # its three steps
    expect(page.locator('#loss-chart polyline[data-series="reward-model loss"]')).to_have_count(1)
    expect(page.locator("#loss-chart text", has_text="step")).to_have_count(1)  # x is the stage's step

    # Gate figures of a model's versions as a chart across versions.
    model = f"test-dash-{RUN}"
    producer = bus.make_producer(settings)
    for number, rate in ((1, 0.55), (2, 0.7)):
        bus.publish(producer, topics.MODEL_UPDATES, announcement(model, number, rate))
    bus.flush_or_raise(producer)
    try:
        page.locator("#gate-metric").select_option("judge_target_rate")
        gate = page.locator(f'#gate-chart polyline[data-series="{model}"]')
        expect(gate).to_have_attribute("points", re.compile(r"^\S+ \S+$"))
    finally:
        producer.produce(topics.MODEL_UPDATES.name, key=model.encode(), value=None)  # compacted away
        producer.flush(30)

    publish_progress(settings, stage="done", message="test event finished")
    expect(run_row.locator("td").nth(1)).to_have_text("done")
    expect(page.locator("#throughput tbody tr").first).to_be_visible()
    assert page.evaluate("window.__loadedOnce") is True
