"""The standard consumer loop against the real broker: dead letters, poison records, outages."""

from __future__ import annotations

import base64
import threading
import uuid
from datetime import UTC, datetime

import pytest
from confluent_kafka import Producer
from prometheus_client import REGISTRY
from structlog.testing import capture_logs
from topic_reader import read_records

from ctrlgpt.retry import retrying
from streams import bus, topics
from streams.records import PageCleaned
from streams.topics import Topic

pytestmark = pytest.mark.integration


def _page(url: str) -> PageCleaned:
    return PageCleaned(
        url=url,
        domain="example.org",
        title="A title",
        summary="A summary.",
        text="Some text.",
        language="en",
        content_sha256="0" * 64,
        fetched_at=datetime.now(UTC),
        crawl_id="test",
    )


def stage_figures(stage: str) -> dict[str, float]:
    def value(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, {"stage": stage, **labels}) or 0.0

    return {
        "records": value("ctrlgpt_stage_records_total"),
        "dead_letters": value("ctrlgpt_stage_dead_letters_total"),
        "unavailable": value("ctrlgpt_stage_errors_total", error_type="ServiceUnavailable"),
        "rejected": value("ctrlgpt_stage_errors_total", error_type="RecordRejected"),
    }


def test_consume_dead_letters_bad_records_and_waits_out_an_outage(settings):
    run = uuid.uuid4().hex
    topic = Topic(f"ctrlgpt.test.bus.{run}", PageCleaned, key="url", partitions=1)
    bus.ensure_topics(settings, [topic])

    good, poison = f"http://example.org/good-{run}", f"http://example.org/poison-{run}"
    producer: Producer = bus.make_producer(settings)
    producer.produce(topic.name, key=b"garbage", value=b"{not json " + run.encode())
    bus.publish(producer, topic, _page(good))
    bus.publish(producer, topic, _page(poison))
    bus.flush_or_raise(producer)

    written: list[str] = []
    outages = {"left": 2}
    stop = threading.Event()
    before = stage_figures("index")

    def write(batch: list[bus.Received]) -> None:
        if outages["left"]:
            outages["left"] -= 1
            raise bus.ServiceUnavailable("search engine down (simulated outage)")
        for received in batch:
            if received.record.url == poison:
                raise bus.RecordRejected("this page can never be indexed")
        written.extend(received.record.url for received in batch)
        if good in written:
            stop.set()

    worker = threading.Thread(
        target=bus.consume,
        kwargs=dict(settings=settings, group=f"test-bus-{run}", topic=topic, stage="index", write=write, stop=stop),
    )
    worker.start()
    worker.join(timeout=90)
    assert not worker.is_alive(), "the consumer did not get the good record through"
    assert written == [good], "the good record is written once, after the outage, and the poison one never"

    letters = read_records(
        settings,
        topics.dead_letter_topic("index"),
        until=lambda found: len(found) >= 2,
        keep=lambda letter: letter.source_topic == topic.name,
    )
    by_type = {letter.error_type: letter for letter in letters}
    assert set(by_type) == {"ContractError", "RecordRejected"}
    assert "not JSON" in by_type["ContractError"].reason
    assert base64.b64decode(by_type["ContractError"].original_base64) == b"{not json " + run.encode()
    assert by_type["RecordRejected"].reason == "this page can never be indexed"
    assert topics.PAGES_CLEAN.decode(base64.b64decode(by_type["RecordRejected"].original_base64)).url == poison
    # The worker's own /metrics figures: three records finished (one written, two dead-lettered), two
    # dead letters, the two outages and the rejection among the failures.
    after = stage_figures("index")
    assert after["records"] - before["records"] == 3
    assert after["dead_letters"] - before["dead_letters"] == 2
    assert after["unavailable"] - before["unavailable"] == 2
    assert after["rejected"] - before["rejected"] >= 1


def test_deliver_all_sends_again_what_kafka_failed_to_take_and_each_record_lands_once(settings):
    run = uuid.uuid4().hex
    topic = Topic(f"ctrlgpt.test.deliver.{run}", PageCleaned, key="url", partitions=1)
    urls = [f"http://example.org/{run}/{n}" for n in range(3)]
    # The topic does not exist yet and this producer gives a message 1 s: the first deliveries fail for
    # real, as they do when Kafka is away longer than `delivery.timeout.ms`.
    producer = bus.make_producer(
        settings, **{"delivery.timeout.ms": 1000, "linger.ms": 0, "allow.auto.create.topics": False}
    )
    creator = threading.Timer(2.0, bus.ensure_topics, args=(settings, [topic]))
    creator.start()
    with capture_logs() as logs:
        bus.deliver_all(producer, [bus.Outgoing.of(topic, _page(url)) for url in urls], flush_timeout=5.0)
    creator.join()

    events = [entry["event"] for entry in logs]
    assert "kafka.delivery_failed" in events and "kafka.delivery_retrying" in events
    pages = read_records(settings, topic, until=lambda found: len(found) >= len(urls), timeout=30)
    assert sorted(page.url for page in pages) == sorted(urls)
    more = read_records(settings, topic, until=lambda found: len(found) > len(urls), timeout=3)
    assert len(more) == len(urls), "a record delivered once is never produced again"


def test_a_rebalance_while_paused_neither_loses_nor_doubles_the_held_records(settings):
    """One worker holds a batch (its service away, partitions paused); a second joins the group; the service
    comes back: every record is written exactly once, by whichever worker owns its partition then."""
    run = uuid.uuid4().hex
    topic = Topic(f"ctrlgpt.test.rebalance.{run}", PageCleaned, key="url", partitions=4)
    bus.ensure_topics(settings, [topic])
    urls = [f"http://example.org/{run}/{n}" for n in range(40)]
    producer: Producer = bus.make_producer(settings)
    for url in urls:
        bus.publish(producer, topic, _page(url))
    bus.flush_or_raise(producer)

    service_up, stop, lock = threading.Event(), threading.Event(), threading.Lock()
    written: dict[str, list[str]] = {"first": [], "second": []}
    held: list[int] = []

    def writer(name: str):
        def write(batch: list[bus.Received]) -> None:
            if not service_up.is_set():
                held.append(len(batch))
                raise bus.ServiceUnavailable("search engine down (simulated outage)")
            with lock:
                written[name].extend(received.record.url for received in batch)

        return write

    def start(name: str) -> threading.Thread:
        worker = threading.Thread(
            target=bus.consume,
            kwargs=dict(
                settings=settings,
                group=f"test-rebalance-{run}",
                topic=topic,
                stage="index",
                write=writer(name),
                stop=stop,
            ),
        )
        worker.start()
        return worker

    with capture_logs() as logs:
        first = start("first")
        retrying(AssertionError, what="the first worker holding records", give_up_after_s=60, max_delay_s=0.5)(
            lambda: _assert(held and sum(held) >= 1)
        )
        second = start("second")
        retrying(AssertionError, what="a rebalance", give_up_after_s=60, max_delay_s=0.5)(
            lambda: _assert(sum(entry["event"] == "consumer.assigned" for entry in logs) >= 3)
        )
        service_up.set()
        retrying(AssertionError, what="every record written", give_up_after_s=60, max_delay_s=0.5)(
            lambda: _assert(len(written["first"]) + len(written["second"]) >= len(urls))
        )
        stop.set()
        first.join(60)
        second.join(60)

    dropped = sum(entry.get("held_dropped", 0) for entry in logs if entry["event"] == "consumer.revoked")
    assert "stage.paused" in [entry["event"] for entry in logs]
    assert dropped > 0, "no held record was revoked: the test proves nothing"
    assert sorted(written["first"] + written["second"]) == sorted(urls)
    assert written["first"] and written["second"], written


def _assert(condition: object) -> None:
    assert condition


def test_paused_through_an_outage_the_stage_resumes_where_it_stopped(settings):
    """More records than one batch wait behind the held batch (fetched ahead by librdkafka before the pause):
    after the outage every record is written once, in order."""
    run = uuid.uuid4().hex
    topic = Topic(f"ctrlgpt.test.resume.{run}", PageCleaned, key="url", partitions=1)
    bus.ensure_topics(settings, [topic])
    urls = [f"http://example.org/{run}/{n}" for n in range(250)]
    producer: Producer = bus.make_producer(settings)
    for url in urls:
        bus.publish(producer, topic, _page(url))
    bus.flush_or_raise(producer)
    outages, written, stop = {"left": 4}, [], threading.Event()

    def write(batch: list[bus.Received]) -> None:
        if outages["left"]:
            outages["left"] -= 1
            raise bus.ServiceUnavailable("search engine down (simulated outage)")
        written.extend(received.record.url for received in batch)
        if len(written) >= len(urls):
            stop.set()

    worker = threading.Thread(
        target=bus.consume,
        kwargs=dict(
            settings=settings,
            group=f"test-resume-{run}",
            topic=topic,
            stage="index",
            write=write,
            stop=stop,
        ),
    )
    worker.start()
    worker.join(timeout=90)
    assert not worker.is_alive(), f"{len(written)} of {len(urls)} records written"
    assert written == urls
