"""A topic's records from the beginning to its current end, read without a consumer group's commits.

For whoever needs a topic as it stands, not a place in a group: a training run (everything published
so far), the admin API and the demo (the runs and model updates so far), the benches. Every partition
is assigned from its low watermark and read up to the high watermark seen when reading began (records
written later are the next reader's). Undecodable records are skipped and counted: their producing
stage dead-lettered them.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import structlog
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from ctrlgpt.retry import retrying
from ctrlgpt.settings import Settings
from streams import bus, groups
from streams.records import Record
from streams.topics import ContractError, Topic

__all__ = ["TopicSnapshot", "read_snapshot", "read_snapshot_when_kafka_is_back"]

log = structlog.get_logger()

READ_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class TopicSnapshot:
    """Every record of a topic up to the end offsets seen when reading began, in log order."""

    records: list[Record]
    end_offsets: dict[int, int]  # partition -> offset after the last record read
    skipped: int  # undecodable records (the producing stage dead-lettered them already)
    positions: list[tuple[int, int]] = field(default_factory=list)  # (partition, offset) of each record

    def positioned(self) -> list[tuple[Record, int, int]]:
        """(record, partition, offset) of each record: an incremental run tells new records from trained ones."""
        return [(record, *position) for record, position in zip(self.records, self.positions, strict=True)]


def read_snapshot_when_kafka_is_back(
    settings: Settings, topic: Topic, stop: threading.Event | None = None
) -> TopicSnapshot:
    """`read_snapshot`, read again from the start (ctrlgpt.retry's back-off) while Kafka is away, until `stop`."""
    wait = retrying((KafkaException, bus.ServiceUnavailable), what=f"training snapshot of {topic.name}", stop=stop)
    return wait(read_snapshot, settings, topic)


def read_snapshot(settings: Settings, topic: Topic, timeout: float = READ_TIMEOUT_S) -> TopicSnapshot:
    """Read a topic from the beginning to its current high watermarks, without a consumer group's commits."""
    consumer = bus.make_consumer(settings, groups.snapshot_reader(), **{"enable.partition.eof": True})
    try:
        metadata = consumer.list_topics(topic.name, timeout=10).topics[topic.name]
        if metadata.error is not None:
            raise bus.ServiceUnavailable(f"topic {topic.name} is not available: {metadata.error}")
        ends: dict[int, int] = {}
        starts: list[TopicPartition] = []
        for partition in sorted(metadata.partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic.name, partition), timeout=10)
            ends[partition] = high
            if high > low:
                starts.append(TopicPartition(topic.name, partition, low))
        read: dict[int, list[tuple[Record, int]]] = {partition: [] for partition in ends}
        pending = {tp.partition for tp in starts}
        skipped = 0
        consumer.assign(starts)
        deadline = time.monotonic() + timeout
        while pending:
            if time.monotonic() > deadline:
                raise bus.ServiceUnavailable(
                    f"reading {topic.name} took longer than {timeout}s; partitions left: {sorted(pending)}"
                )
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    pending.discard(msg.partition())
                    continue
                raise KafkaException(msg.error())
            if msg.offset() >= ends[msg.partition()]:
                pending.discard(msg.partition())  # written after the run began: the next run's data
                continue
            try:
                read[msg.partition()].append((topic.decode(msg.value()), msg.offset()))
            except ContractError as exc:
                skipped += 1
                log.warning(
                    "train.record_skipped",
                    topic=topic.name,
                    partition=msg.partition(),
                    offset=msg.offset(),
                    reason=str(exc)[:300],
                )
            if msg.offset() >= ends[msg.partition()] - 1:
                pending.discard(msg.partition())
        in_order = [(record, partition, offset) for partition in sorted(read) for record, offset in read[partition]]
        return TopicSnapshot(
            [record for record, _, _ in in_order],
            ends,
            skipped,
            [(partition, offset) for _, partition, offset in in_order],
        )
    finally:
        consumer.close()
