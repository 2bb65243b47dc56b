"""Burrow's evaluation rules on windows of offset samples, and the tracker that keeps the windows."""

from __future__ import annotations

import pytest

from streams.consumer_lag import (
    GroupOffsets,
    LagTracker,
    OffsetSample,
    OffsetsSnapshot,
    Status,
    evaluate_group,
    evaluate_partition,
)


def window(*points: tuple[int, int], start: float = 0.0, step: float = 10.0) -> list[OffsetSample]:
    """Samples `step` seconds apart from (committed, end) pairs."""
    return [OffsetSample(start + i * step, committed, end) for i, (committed, end) in enumerate(points)]


def status_of(
    samples: list[OffsetSample],
    *,
    owned: bool = False,
    stop_after_s: float = 120.0,
    now: float | None = None,
    unchanged_since: float | None = None,
) -> Status:
    now = samples[-1].at if now is None else now
    if unchanged_since is None:
        unchanged_since = next(s.at for s in samples if s.committed == samples[-1].committed)
    return evaluate_partition(
        samples, now=now, unchanged_since=unchanged_since, owned=owned, stop_after_s=stop_after_s
    ).status


def test_caught_up_consumer_is_ok() -> None:
    assert status_of(window((10, 10), (20, 20), (30, 30))) is Status.OK


def test_lag_zero_anywhere_in_the_window_is_ok_even_if_it_grows_since() -> None:
    assert status_of(window((10, 10), (10, 15), (12, 30))) is Status.OK


def test_lag_that_never_decreases_is_a_warning() -> None:
    assert status_of(window((10, 15), (20, 26), (30, 40))) is Status.WARN


def test_lag_that_decreases_somewhere_is_ok() -> None:
    assert status_of(window((10, 20), (25, 30), (30, 40))) is Status.OK


def test_committed_offset_going_back_is_a_rewind() -> None:
    assert status_of(window((10, 20), (5, 20), (8, 20))) is Status.REWIND


def test_no_progress_for_longer_than_the_setting_without_an_owner_is_stop() -> None:
    samples = window((10, 20), (10, 25), (10, 30))
    assert status_of(samples, stop_after_s=15.0, unchanged_since=0.0) is Status.STOP


def test_no_progress_with_a_live_owner_is_stall() -> None:
    samples = window((10, 20), (10, 20), (10, 20))
    assert status_of(samples, owned=True, stop_after_s=15.0, unchanged_since=0.0) is Status.STALL


def test_a_live_owner_without_progress_within_the_setting_is_only_a_warning() -> None:
    samples = window((10, 20), (10, 25), (10, 30))
    assert status_of(samples, owned=True, stop_after_s=600.0, unchanged_since=0.0) is Status.WARN


def test_nobody_owning_a_partition_that_did_not_move_across_the_window_is_stop_at_once() -> None:
    samples = window((10, 20), (10, 25), (10, 30), step=1.0)
    assert status_of(samples, stop_after_s=600.0, unchanged_since=0.0) is Status.STOP
    assert (
        status_of(window((10, 20)), stop_after_s=600.0, unchanged_since=0.0) is Status.OK
    )  # one sample proves nothing
    moved = window((8, 20), (10, 25), (10, 30), step=1.0)  # it moved in the window: a member left a moment ago
    assert status_of(moved, stop_after_s=600.0) is Status.WARN


def test_stall_counts_from_when_the_offset_last_moved_not_from_the_window() -> None:
    samples = window((10, 20), (10, 20), start=1000.0)
    assert status_of(samples, owned=True, stop_after_s=60.0, unchanged_since=500.0) is Status.STALL
    assert status_of(samples, owned=True, stop_after_s=600.0, unchanged_since=500.0) is Status.WARN


def test_stopped_consumer_without_lag_is_ok() -> None:
    samples = window((30, 30), (30, 30))
    assert status_of(samples, stop_after_s=1.0, now=1000.0, unchanged_since=0.0) is Status.OK


def test_one_sample_with_lag_cannot_warn() -> None:
    assert status_of(window((10, 20))) is Status.OK


def test_time_to_drain_from_net_consumption_rate() -> None:
    # Consumes 3/s, the log grows 1/s: a lag of 40 drains in 20 s.
    samples = window((0, 60), (30, 70), start=0.0, step=10.0)
    result = evaluate_partition(samples, now=10.0, unchanged_since=10.0, owned=True, stop_after_s=60)
    assert result.lag == 40
    assert result.consume_rate == pytest.approx(3.0)
    assert result.produce_rate == pytest.approx(1.0)
    assert result.time_to_drain_s == pytest.approx(20.0)


def test_no_time_to_drain_when_the_log_grows_faster() -> None:
    result = evaluate_partition(window((0, 10), (5, 30)), now=10, unchanged_since=10, owned=True, stop_after_s=60)
    assert result.time_to_drain_s is None
    drained = evaluate_partition(window((0, 10), (30, 30)), now=10, unchanged_since=10, owned=True, stop_after_s=60)
    assert drained.time_to_drain_s == 0.0


def test_group_status_is_the_worst_partition_and_burrow_folds_errors_into_err() -> None:
    ok = evaluate_partition(
        window((5, 5)), now=0, unchanged_since=0, owned=True, stop_after_s=60, topic="t", partition=0
    )
    warn = evaluate_partition(
        window((1, 5), (1, 9)), now=10, unchanged_since=0, owned=True, stop_after_s=60, topic="t", partition=1
    )
    stop = evaluate_partition(
        window((1, 5), (1, 9)), now=100, unchanged_since=0, owned=False, stop_after_s=60, topic="t", partition=2
    )
    assert evaluate_group("g", [ok, warn]).status is Status.WARN
    assert evaluate_group("g", [ok, warn]).burrow_status == "WARN"
    group = evaluate_group("g", [stop, ok, warn])
    assert group.status is Status.STOP
    assert group.burrow_status == "ERR"
    assert [p.partition for p in group.partitions] == [0, 1, 2]
    assert group.total_lag == 0 + 8 + 8


def snapshot(at: float, committed: dict, end: dict, *, owned=frozenset(), group: str = "g") -> OffsetsSnapshot:
    return OffsetsSnapshot(at, end, (GroupOffsets(group, committed, state="STABLE", members=1, owned=owned),))


def test_tracker_slides_the_window_and_detects_a_consumer_that_stopped() -> None:
    tracker = LagTracker(window=3, stop_after_s=25.0, history=4)
    tp = ("t", 0)
    for i, end in enumerate([10, 20, 30, 40, 50, 60]):
        committed = 10 if i < 2 else 15  # moved once at t=20, then stopped
        groups = tracker.add(snapshot(i * 10.0, {tp: committed}, {tp: end}))
    (group,) = groups
    (partition,) = group.partitions
    assert partition.samples == 3
    assert partition.lag == 45
    assert group.status is Status.STOP  # last moved at t=20, now t=50
    assert len(tracker.history_points()) == 4  # bounded
    assert tracker.history_points()[-1]["groups"]["g"] == {"lag": 45, "status": "STOP"}


def test_tracker_marks_an_owned_partition_stalled() -> None:
    tracker = LagTracker(window=3, stop_after_s=5.0)
    tp = ("t", 0)
    for i in range(3):
        groups = tracker.add(snapshot(i * 10.0, {tp: 3}, {tp: 9}, owned=frozenset({tp})))
    assert groups[0].status is Status.STALL


def test_tracker_forgets_partitions_that_are_gone() -> None:
    tracker = LagTracker(window=3)
    tracker.add(snapshot(0, {("t", 0): 1, ("t", 1): 1}, {("t", 0): 5, ("t", 1): 5}))
    groups = tracker.add(snapshot(10, {("t", 0): 2}, {("t", 0): 5}))
    assert [p.partition for p in groups[0].partitions] == [0]
    assert groups[0].partitions[0].samples == 2
