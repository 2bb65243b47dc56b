"""The API's view of the pipeline for /metrics and the dashboard, sampled in the background.

`SnapshotCache` reads Kafka offsets at most once per `max_age_s`, one read at a time,
and waits for a read at most `timeout_s`: a slow or dead broker costs a scrape that
long, never more, and the answer is "no snapshot" rather than an error. `OpsMonitor`
samples through it every `ops_sample_interval_s` into a `LagTracker` (Burrow-style
status, bounded lag history) and a bounded history of topic end offsets (throughput),
and follows the training-runs and model-updates topics (`api.ops.events`).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

import structlog

from api.ops.events import EventFollower, ModelVersions, TrainingRuns
from api.ops.exporter_lease import ExporterLease
from ctrlgpt.settings import Settings
from streams import topics
from streams.consumer_lag import GroupLag, LagTracker, OffsetsSnapshot
from streams.offsets import OffsetsReader

__all__ = ["PRODUCED_BY", "OpsMonitor", "SnapshotCache", "dead_letters", "topic_totals"]

log = structlog.get_logger()

# The stage whose output each topic is: its end offsets are that stage's throughput.
PRODUCED_BY: dict[str, str] = {
    topics.CRAWL_REQUESTS.name: "seed and links",
    topics.PAGES_RAW.name: "crawl",
    topics.PAGES_CLEAN.name: "clean",
    topics.LABELS.name: "labels",
    topics.TRAINING_COMMANDS.name: "operator",
    topics.TRAINING_RUNS.name: "train",
    topics.MODEL_UPDATES.name: "promote",
    topics.MODEL_LOAD_FAILURES.name: "api",
}
DEAD_LETTER_TOPICS: dict[str, str] = {topics.dead_letter_topic(stage).name: stage for stage in topics.STAGES}


def topic_totals(snapshot: OffsetsSnapshot) -> dict[str, int]:
    """Records ever appended per pipeline topic: the sum of its partitions' end offsets."""
    totals: dict[str, int] = {}
    for (topic, _), end in snapshot.end_offsets.items():
        if topic in PRODUCED_BY:
            totals[topic] = totals.get(topic, 0) + end
    return totals


def dead_letters(snapshot: OffsetsSnapshot) -> dict[str, int]:
    """Dead letters ever written per stage (end offsets of `ctrlgpt.dlq.<stage>`)."""
    counts: dict[str, int] = {}
    for (topic, _), end in snapshot.end_offsets.items():
        if topic in DEAD_LETTER_TOPICS:
            stage = DEAD_LETTER_TOPICS[topic]
            counts[stage] = counts.get(stage, 0) + end
    return counts


class SnapshotCache:
    """`get()`: a snapshot at most `max_age_s` old, or None if none could be read within `timeout_s`."""

    def __init__(
        self,
        read: Callable[[], OffsetsSnapshot],
        *,
        max_age_s: float,
        timeout_s: float,
        on_new: Callable[[OffsetsSnapshot], None] = lambda snapshot: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read, self._on_new, self._clock = read, on_new, clock
        self._max_age, self._timeout = max_age_s, timeout_s
        self._lock = threading.Lock()
        self._latest: tuple[float, OffsetsSnapshot] | None = None
        self._pending: Future | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kafka-offsets")

    def get(self, max_age_s: float | None = None) -> OffsetsSnapshot | None:
        max_age = self._max_age if max_age_s is None else max_age_s
        with self._lock:
            if self._latest is not None and self._clock() - self._latest[0] <= max_age:
                return self._latest[1]
            if self._pending is None:
                self._pending = self._executor.submit(self._read_and_keep)
            pending = self._pending
        try:
            return pending.result(timeout=self._timeout)
        except FutureTimeout:
            log.warning("ops.kafka_slow", waited_s=self._timeout)
            return None
        except Exception as exc:
            log.warning("ops.kafka_unreadable", error=str(exc))
            return None

    def _read_and_keep(self) -> OffsetsSnapshot:
        try:
            snapshot = self._read()
            with self._lock:
                self._latest = (self._clock(), snapshot)
            self._on_new(snapshot)
            return snapshot
        finally:
            with self._lock:
                self._pending = None

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class OpsMonitor:
    """Background sampling of offsets and following of training and model events, for the ops routes."""

    def __init__(
        self,
        settings: Settings,
        read: Callable[[], OffsetsSnapshot] | None = None,
        lease: ExporterLease | None = None,
    ) -> None:
        """`read` None: offsets from the settings' Kafka, and the replicas' lease on exporting them
        (`lease`, made here unless given); a `read` of the caller's and no lease: this one exports."""
        self.settings = settings
        self.interval_s = settings.ops_sample_interval_s
        self._lease = (
            lease if lease is not None or read is not None else ExporterLease(settings, settings.ops_exporter_group)
        )
        if read is None:
            reader = OffsetsReader(
                settings.kafka_bootstrap,
                group_pattern=settings.ops_groups,
                extra_topics=list(PRODUCED_BY) + list(DEAD_LETTER_TOPICS),
                timeout_s=settings.ops_kafka_timeout_s,
            )
            read = reader.read
        self._lock = threading.Lock()
        self._tracker = LagTracker(
            window=settings.lag_window_samples,
            stop_after_s=settings.lag_stop_after_s,
            history=settings.ops_history_samples,
        )
        self._evaluation: list[GroupLag] = []
        self._throughput: deque[dict] = deque(maxlen=settings.ops_history_samples)
        self.runs, self.versions = TrainingRuns(), ModelVersions()
        self._events = EventFollower(settings, self.runs, self.versions, self._lock)
        self._cache = SnapshotCache(
            read, max_age_s=self.interval_s, timeout_s=settings.ops_kafka_timeout_s, on_new=self._record
        )
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, name="ops-sampler", daemon=True)

    def start(self) -> None:
        self._sampler.start()
        self._events.start()

    def stop(self) -> None:
        self._stop.set()
        self._sampler.join(timeout=self.settings.ops_kafka_timeout_s + 5)
        self._events.stop()
        self._cache.close()
        if self._lease is not None:
            self._lease.close()

    @property
    def exports_cluster_series(self) -> bool:
        """Whether this replica's /metrics carries the cluster-wide series (api.ops.exporter_lease)."""
        return self._lease is None or self._lease.held

    def snapshot(self) -> OffsetsSnapshot | None:
        """Fresh offsets (at most one sample interval old), or None while Kafka cannot be read."""
        return self._cache.get()

    def lag(self) -> list[GroupLag]:
        with self._lock:
            return list(self._evaluation)

    def lag_history(self) -> list[dict]:
        with self._lock:
            return self._tracker.history_points()

    def throughput_history(self) -> list[dict]:
        with self._lock:
            return list(self._throughput)

    def training_runs(self) -> tuple[list[dict], dict[str, int]]:
        with self._lock:
            return self.runs.recent(), self.runs.by_stage()

    def model_versions(self) -> list[dict]:
        with self._lock:
            return self.versions.all()

    @property
    def undecodable_events(self) -> int:
        return self._events.undecodable

    def _record(self, snapshot: OffsetsSnapshot) -> None:
        with self._lock:
            self._evaluation = self._tracker.add(snapshot)
            self._throughput.append(
                {"at": snapshot.taken_at, "topics": topic_totals(snapshot), "dead_letters": dead_letters(snapshot)}
            )

    def _sample(self) -> None:
        while not self._stop.is_set():
            if self._lease is not None:
                self._lease.poll()
            # A scrape may have just read: reuse that only if it is much fresher than the period.
            self._cache.get(max_age_s=self.interval_s / 2)
            self._stop.wait(self.interval_s)
