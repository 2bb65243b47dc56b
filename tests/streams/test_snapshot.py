"""Reading a whole topic to its current end against the real broker, without a consumer group's commits."""

from __future__ import annotations

import uuid

import pytest

from streams import bus
from streams.records import LabelRecorded, SentimentLabel
from streams.snapshot import read_snapshot
from streams.topics import Topic

pytestmark = pytest.mark.integration


def _labels(count: int, prefix: str) -> list[LabelRecorded]:
    return [
        LabelRecorded(
            label_id=f"{prefix}:label:{i}",
            source="doccano",
            annotator="tester",
            label=SentimentLabel(text=f"Passage {i}.", sentiment="positive" if i % 2 == 0 else "negative"),
        )
        for i in range(count)
    ]


def test_snapshot_reads_to_the_end_and_counts_undecodable_records(settings):
    run = uuid.uuid4().hex
    topic = Topic(f"ctrlgpt.test.snapshot.{run}", LabelRecorded, key="label_id", partitions=2)
    bus.ensure_topics(settings, [topic])
    producer = bus.make_producer(settings)
    events = _labels(6, prefix=run)
    for event in events:
        bus.publish(producer, topic, event)
    producer.produce(topic.name, key=b"garbage", value=b"{not a label")
    bus.flush_or_raise(producer)

    snapshot = read_snapshot(settings, topic)

    assert sorted(r.label_id for r in snapshot.records) == sorted(e.label_id for e in events)
    assert snapshot.skipped == 1
    assert sum(snapshot.end_offsets.values()) == 7 and set(snapshot.end_offsets) == {0, 1}
