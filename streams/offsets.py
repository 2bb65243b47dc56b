"""Reads offsets from Kafka into an `OffsetsSnapshot`: committed offsets of groups, end offsets of topics.

One AdminClient per reader. Every request has `timeout_s`; a failure of the whole
read (the broker is down) raises `bus.ServiceUnavailable`. A group whose offsets
cannot be read this time (deleted meanwhile, say) is left out with a warning.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable

import structlog
from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from streams.bus import ServiceUnavailable
from streams.consumer_lag import GroupOffsets, OffsetsSnapshot

__all__ = ["OffsetsReader"]

log = structlog.get_logger()


class OffsetsReader:
    """Snapshots of the groups matching `group_pattern` (or exactly `groups`) and of the topics they read."""

    def __init__(
        self,
        bootstrap: str,
        *,
        group_pattern: str = ".*",
        groups: Iterable[str] = (),
        extra_topics: Iterable[str] = (),
        timeout_s: float = 5.0,
    ) -> None:
        self._admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": int(timeout_s * 1000)})
        self._pattern = re.compile(group_pattern)
        self._groups = set(groups)
        self._extra_topics = set(extra_topics)
        self._timeout = timeout_s

    def read(self) -> OffsetsSnapshot:
        try:
            names = self._group_names()
            committed = self._committed(names)
            descriptions = self._describe([name for name in names if committed.get(name)])
            wanted_topics = self._extra_topics | {topic for offsets in committed.values() for topic, _ in offsets}
            end_offsets = self._end_offsets(wanted_topics)
        except KafkaException as exc:
            raise ServiceUnavailable(f"Kafka offsets not readable: {exc}") from exc
        groups = tuple(
            GroupOffsets(group=name, committed=committed[name], **descriptions.get(name, {}))
            for name in sorted(committed)
            if committed[name]
        )
        return OffsetsSnapshot(taken_at=time.time(), end_offsets=end_offsets, groups=groups)

    def _group_names(self) -> list[str]:
        listed = self._admin.list_consumer_groups(request_timeout=self._timeout).result()
        if listed.errors and not listed.valid:
            raise ServiceUnavailable(f"consumer groups not listable: {listed.errors[0]}")
        if listed.errors:
            # Another broker answered: show what it knows, and say that the list is partial.
            log.warning("offsets.groups_partly_listed", errors=[str(e) for e in listed.errors])
        names = [g.group_id for g in listed.valid]
        if self._groups:
            return sorted(self._groups & set(names))
        return sorted(name for name in names if self._pattern.search(name))

    def _committed(self, names: list[str]) -> dict[str, dict[tuple[str, int], int]]:
        # One group per request (librdkafka's limit); the requests run concurrently.
        futures = {
            name: self._admin.list_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(name)], request_timeout=self._timeout
            )[name]
            for name in names
        }
        committed: dict[str, dict[tuple[str, int], int]] = {}
        for name, future in futures.items():
            try:
                result = future.result()
            except KafkaException as exc:
                log.warning("offsets.group_unreadable", group=name, error=str(exc))
                continue
            # A negative offset means "nothing committed" for that partition.
            committed[name] = {
                (tp.topic, tp.partition): tp.offset
                for tp in result.topic_partitions
                if tp.error is None and tp.offset >= 0
            }
        return committed

    def _describe(self, names: list[str]) -> dict[str, dict]:
        if not names:
            return {}
        described: dict[str, dict] = {}
        for name, future in self._admin.describe_consumer_groups(names, request_timeout=self._timeout).items():
            try:
                description = future.result()
            except KafkaException as exc:
                log.warning("offsets.group_not_described", group=name, error=str(exc))
                continue
            owned = frozenset(
                (tp.topic, tp.partition)
                for member in description.members
                if member.assignment is not None
                for tp in member.assignment.topic_partitions
            )
            described[name] = {"state": description.state.name, "members": len(description.members), "owned": owned}
        return described

    def _end_offsets(self, topic_names: set[str]) -> dict[tuple[str, int], int]:
        if not topic_names:
            return {}
        metadata = self._admin.list_topics(timeout=self._timeout).topics
        requests = {
            TopicPartition(name, partition): OffsetSpec.latest()
            for name in sorted(topic_names)
            if name in metadata and metadata[name].error is None
            for partition in metadata[name].partitions
        }
        if not requests:
            return {}
        return {
            (tp.topic, tp.partition): future.result().offset
            for tp, future in self._admin.list_offsets(requests, request_timeout=self._timeout).items()
        }
