"""The snapshot cache behind /metrics and the dashboard: reuse, one read at a time, failures as "no snapshot"."""

from __future__ import annotations

import threading

from api.ops.monitor import OpsMonitor, SnapshotCache, dead_letters, topic_totals
from streams import groups
from streams.consumer_lag import GroupOffsets, OffsetsSnapshot


def snapshot(at: float = 0.0, committed: int = 1) -> OffsetsSnapshot:
    return OffsetsSnapshot(
        at,
        {("ctrlgpt.pages.raw", 0): 5, ("ctrlgpt.pages.raw", 1): 6, ("ctrlgpt.dlq.crawl", 0): 2, ("other.topic", 0): 9},
        (GroupOffsets(groups.CLEANER, {("ctrlgpt.pages.raw", 0): committed}),),
    )


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_snapshot_is_reused_until_it_is_older_than_max_age() -> None:
    reads: list[int] = []
    clock = Clock()

    def read() -> OffsetsSnapshot:
        reads.append(1)
        return snapshot()

    cache = SnapshotCache(read, max_age_s=5.0, timeout_s=5.0, clock=clock)
    first = cache.get()
    clock.now = 4.0
    assert cache.get() is first and len(reads) == 1
    clock.now = 6.0
    assert cache.get() is not first and len(reads) == 2
    clock.now = 7.0
    assert cache.get(max_age_s=0.5) is not None and len(reads) == 3


def test_a_failed_read_is_none_and_the_next_one_tries_again() -> None:
    attempts: list[int] = []

    def flaky() -> OffsetsSnapshot:
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionError("broker down")
        return snapshot()

    cache = SnapshotCache(flaky, max_age_s=5.0, timeout_s=5.0)
    assert cache.get() is None
    assert cache.get() is not None and len(attempts) == 2


def test_callers_during_a_slow_read_share_it() -> None:
    release, started = threading.Event(), []

    def slow() -> OffsetsSnapshot:
        started.append(1)
        release.wait(30)
        return snapshot()

    cache = SnapshotCache(slow, max_age_s=5.0, timeout_s=0.2)
    assert cache.get() is None and cache.get() is None
    release.set()
    # Each wait is bounded by the timeout; retry until the one read in flight has landed.
    assert any(cache.get() is not None for _ in range(100))
    assert len(started) == 1
    cache.close()


def test_totals_count_pipeline_topics_and_dead_letters_per_stage() -> None:
    assert topic_totals(snapshot()) == {"ctrlgpt.pages.raw": 11}
    assert dead_letters(snapshot()) == {"crawl": 2}


def test_monitor_records_each_new_snapshot_for_history_and_status(api_settings) -> None:
    snapshots = iter([snapshot(10.0, committed=1), snapshot(20.0, committed=3)])
    monitor = OpsMonitor(api_settings.model_copy(update={"ops_sample_interval_s": 0.01}), read=lambda: next(snapshots))
    monitor.snapshot()
    threading.Event().wait(0.05)  # past the cache age, so the next call reads again
    monitor.snapshot()
    assert [p["at"] for p in monitor.lag_history()] == [10.0, 20.0]
    assert monitor.lag_history()[-1]["groups"][groups.CLEANER]["lag"] == 2
    assert [p["topics"]["ctrlgpt.pages.raw"] for p in monitor.throughput_history()] == [11, 11]
    (group,) = monitor.lag()
    assert group.partitions[0].committed == 3
