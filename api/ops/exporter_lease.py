"""Which API replica exports the cluster-wide Kafka series on /metrics.

Lag, offsets, topic totals, dead letters and training runs are the same seen from any
replica; exported by each, a `sum()` over replicas counts them N times. So one replica
exports them: the member of the consumer group `ops_exporter_group` that Kafka assigns the one
partition of the model-updates topic. Kafka's group protocol is the lease: when that
replica stops or dies, its session times out and another member gets the partition. The
group reads from the end, ignores what it reads and never commits.
"""

from __future__ import annotations

import threading

import structlog
from confluent_kafka import Consumer, TopicPartition

from ctrlgpt.settings import Settings
from streams import bus, topics

__all__ = ["ExporterLease"]

log = structlog.get_logger()

LEASE_TOPIC = topics.MODEL_UPDATES
assert LEASE_TOPIC.partitions == 1, "the lease is the assignment of one partition"
SESSION_TIMEOUT_MS = 10_000  # how long a dead holder keeps the lease


class ExporterLease:
    """Polled from one thread (`poll`); `held` may be read from any."""

    def __init__(self, settings: Settings, group: str) -> None:
        self._group = group
        self._consumer: Consumer = bus.make_consumer(
            settings,
            group,
            **{
                "session.timeout.ms": SESSION_TIMEOUT_MS,
                "heartbeat.interval.ms": 2_000,
                "auto.offset.reset": "latest",
                "enable.auto.commit": False,
            },
        )
        self._held = threading.Event()
        self._consumer.subscribe([LEASE_TOPIC.name], on_assign=self._assigned, on_revoke=self._revoked)

    @property
    def held(self) -> bool:
        return self._held.is_set()

    def poll(self, timeout: float = 0.0) -> bool:
        """Keeps this replica in the group (and so in the running for the lease); True while it holds it."""
        self._consumer.poll(timeout)  # what arrives is ignored: only the assignment matters
        return self.held

    def close(self) -> None:
        self._held.clear()
        self._consumer.close()  # leaves the group: another member gets the lease at once

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if partitions:
            self._held.set()
            log.info("ops.exporter_lease_taken", group=self._group)

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if partitions and self._held.is_set():
            self._held.clear()
            log.info("ops.exporter_lease_released", group=self._group)
