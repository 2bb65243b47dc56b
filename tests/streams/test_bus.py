"""The standard consumer loop against the real broker: dead letters, poison records, outages."""

from __future__ import annotations

import base64
import threading
import uuid
from datetime import datetime, timezone

import pytest
from confluent_kafka import Producer

from streams import bus, topics
from streams.records import PageCleaned
from streams.topics import Topic
from topic_reader import read_records

pytestmark = pytest.mark.integration


def _page(url: str) -> PageCleaned:
    return PageCleaned(
        url=url, domain="example.org", title="A title", summary="A summary.", text="Some text.",
        language="en", content_sha256="0" * 64, fetched_at=datetime.now(timezone.utc), crawl_id="test",
    )


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
        settings, topics.dead_letter_topic("index"),
        until=lambda found: len(found) >= 2,
        keep=lambda letter: letter.source_topic == topic.name,
    )
    by_type = {letter.error_type: letter for letter in letters}
    assert set(by_type) == {"ContractError", "RecordRejected"}
    assert "not JSON" in by_type["ContractError"].reason
    assert base64.b64decode(by_type["ContractError"].original_base64) == b"{not json " + run.encode()
    assert by_type["RecordRejected"].reason == "this page can never be indexed"
    assert topics.PAGES_CLEAN.decode(base64.b64decode(by_type["RecordRejected"].original_base64)).url == poison
