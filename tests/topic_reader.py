"""Read a topic back from the beginning, without committing, for assertions."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from confluent_kafka import Consumer, TopicPartition

from ctrlgpt.settings import Settings
from streams.records import Record
from streams.topics import ContractError, Topic


def read_records(
    settings: Settings,
    topic: Topic,
    until: Callable[[list[Record]], bool],
    *,
    keep: Callable[[Record], bool] = lambda record: True,
    timeout: float = 60.0,
) -> list[Record]:
    """Read `topic` from the beginning (no group commits), keeping matching records until `until` holds."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"test-reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    partitions = consumer.list_topics(topic.name, timeout=10).topics[topic.name].partitions
    consumer.assign([TopicPartition(topic.name, p, 0) for p in partitions])
    found: list[Record] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not until(found):
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            try:
                record = topic.decode(msg.value())
            except ContractError:
                continue
            if keep(record):
                found.append(record)
    finally:
        consumer.close()
    return found
