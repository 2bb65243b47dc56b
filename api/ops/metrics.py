"""Prometheus metrics of an API replica: Kafka figures collected on scrape, request latency, the served model.

Kafka metric names follow kafka-exporter (`kafka_consumergroup_lag`, ...), so its
dashboards and alerts work unchanged. They come from `OpsMonitor.snapshot()`: cached
for one sample interval and waited for at most `ops_kafka_timeout_s`; while Kafka
cannot be read they are absent and `ctrlgpt_kafka_up` is 0. They are the cluster's, the
same from every replica, so only the replica holding the exporter lease
(`api.ops.exporter_lease`, `ctrlgpt_ops_exporter` 1) exports them: a `sum()` over
replicas counts each once. A replica's own series (its models, its requests) come from each.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Histogram, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    StateSetMetricFamily,
)

from api.ops.monitor import OpsMonitor, dead_letters, topic_totals
from api.serving.served_model import ModelHolder, ModelHolders
from streams.consumer_lag import Status

__all__ = ["OpsCollector", "build_registry"]


class OpsCollector:
    """Collects on every scrape; `monitor` None (an app without Kafka) exports only `ctrlgpt_kafka_up 0`.

    `holders`: the app's holders (one per target), or a single holder.
    """

    def __init__(self, monitor: OpsMonitor | None, holders: ModelHolders | ModelHolder) -> None:
        self._monitor = monitor
        # A single holder's model name is known only from the version it serves.
        self._named: dict[str | None, ModelHolder] = (
            holders.by_model_name() if isinstance(holders, ModelHolders) else {None: holders}
        )
        self._holders = list(self._named.values())

    def describe(self) -> list[Metric]:
        return []  # no names up front: registering must not read Kafka

    def collect(self) -> Iterator[Metric]:
        yield from self._model_info()
        snapshot = self._monitor.snapshot() if self._monitor is not None else None
        up = GaugeMetricFamily("ctrlgpt_kafka_up", "1 if the last offsets read from Kafka succeeded in time, else 0.")
        up.add_metric([], 1.0 if snapshot is not None else 0.0)
        yield up
        exporter = GaugeMetricFamily(
            "ctrlgpt_ops_exporter", "1 on the one replica that exports the cluster-wide Kafka series, else 0."
        )
        exports = self._monitor is not None and self._monitor.exports_cluster_series
        exporter.add_metric([], 1.0 if exports else 0.0)
        yield exporter
        if snapshot is None or self._monitor is None or not exports:
            return

        topic_offset = GaugeMetricFamily(
            "kafka_topic_partition_current_offset", "End offset of a partition.", labels=["topic", "partition"]
        )
        for (topic, partition), end in sorted(snapshot.end_offsets.items()):
            topic_offset.add_metric([topic, str(partition)], end)
        yield topic_offset

        labels = ["consumergroup", "topic", "partition"]
        current = GaugeMetricFamily("kafka_consumergroup_current_offset", "Committed offset of a group.", labels=labels)
        lag = GaugeMetricFamily("kafka_consumergroup_lag", "End offset minus committed offset.", labels=labels)
        lag_sum = GaugeMetricFamily(
            "kafka_consumergroup_lag_sum", "Lag of a group over a topic.", labels=["consumergroup", "topic"]
        )
        members = GaugeMetricFamily("kafka_consumergroup_members", "Members of a group.", labels=["consumergroup"])
        status = StateSetMetricFamily(
            "ctrlgpt_consumergroup_status",
            "Burrow-style status of a group (its worst partition).",
            labels=["consumergroup"],
        )
        drain = GaugeMetricFamily(
            "ctrlgpt_consumergroup_time_to_drain_seconds",
            "Time to consume the lag at the window's net rate; +Inf when it is not shrinking.",
            labels=["consumergroup"],
        )
        for group in self._monitor.lag():
            sums: dict[str, int] = {}
            for p in group.partitions:
                current.add_metric([group.group, p.topic, str(p.partition)], p.committed)
                lag.add_metric([group.group, p.topic, str(p.partition)], p.lag)
                sums[p.topic] = sums.get(p.topic, 0) + p.lag
            for topic, total in sorted(sums.items()):
                lag_sum.add_metric([group.group, topic], total)
            members.add_metric([group.group], group.members)
            status.add_metric([group.group], {s.value: s is group.status for s in Status})
            ttd = group.time_to_drain_s
            drain.add_metric([group.group], float("inf") if ttd is None else ttd)
        yield from (current, lag, lag_sum, members, status, drain)

        records = CounterMetricFamily(
            "ctrlgpt_topic_records", "Records appended to a pipeline topic (its end offsets).", labels=["topic"]
        )
        for topic, total in sorted(topic_totals(snapshot).items()):
            records.add_metric([topic], total)
        yield records
        letters = CounterMetricFamily("ctrlgpt_dead_letters", "Records a stage dead-lettered.", labels=["stage"])
        for stage, total in sorted(dead_letters(snapshot).items()):
            letters.add_metric([stage], total)
        yield letters

        runs = GaugeMetricFamily(
            "ctrlgpt_training_runs", "Training runs by the stage of their last event.", labels=["stage"]
        )
        _, by_stage = self._monitor.training_runs()
        for stage, count in sorted(by_stage.items()):
            runs.add_metric([stage], count)
        yield runs

    def _model_info(self) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "ctrlgpt_model_info", "The model versions this replica serves.", labels=["model_name", "version"]
        )
        for holder in self._holders:
            current = holder.current
            if current is not None:
                info.add_metric([current.manifest.name, current.version], 1.0)
        yield info
        fallback = GaugeMetricFamily(
            "ctrlgpt_model_fallback",
            "1 while a version serves in place of a refused one (its files failed their checksums, or it did not load).",
            labels=["model_name", "version", "refused_version"],
        )
        for holder in self._holders:
            current, refused = holder.current, holder.fallback
            if current is not None and refused is not None:
                fallback.add_metric([current.manifest.name, current.version, refused.refused_version], 1.0)
        yield fallback
        pending = GaugeMetricFamily(
            "ctrlgpt_model_update_pending_seconds",
            "How long an announced version has waited for the model store, unavailable, while the current version "
            "serves (retried with back-off); absent when none waits.",
            labels=["model_name", "version"],
        )
        now = datetime.now(UTC)
        for name, holder in self._named.items():
            waiting, current = holder.pending, holder.current
            if waiting is not None:
                model_name = name or (current.manifest.name if current is not None else "")
                pending.add_metric([model_name, waiting.version], (now - waiting.since).total_seconds())
        yield pending


def build_registry(
    monitor: OpsMonitor | None, holders: ModelHolders | ModelHolder
) -> tuple[CollectorRegistry, Histogram]:
    """A registry of this app's own (not the process-global one: several apps may live in one process)."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    registry.register(OpsCollector(monitor, holders))
    latency = Histogram(
        "ctrlgpt_http_request_duration_seconds",
        "Time to answer an HTTP request, by route template.",
        ["method", "route", "status"],
        registry=registry,
        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    )
    return registry, latency
