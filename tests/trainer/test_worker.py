"""The training scheduler: triggers, one run at a time, operator commands and cancel (stand-in runs, a fake clock)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from streams import topics
from streams.bus import Received
from streams.records import TrainingRequested
from trainer.progress import RunCancelled
from trainer.trigger import TriggerPolicy
from trainer.worker import TrainingScheduler

WAIT_S = 30.0  # a bound on waiting for a thread; no timing is asserted


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Runs:
    """A stand-in training run: holds until released or cancelled, like `pipeline.run` between steps."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.cancelled: list[str] = []
        self.release = threading.Event()
        self.entered = threading.Semaphore(0)

    def __call__(self, run_id: str, cancel: threading.Event) -> None:
        self.started.append(run_id)
        self.entered.release()
        while not self.release.wait(0.01):
            if cancel.is_set():
                self.cancelled.append(run_id)
                raise RunCancelled(f"cancelled {run_id}")

    def wait_for_start(self) -> str:
        assert self.entered.acquire(timeout=WAIT_S), "no run started"
        return self.started[-1]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def runs() -> Runs:
    return Runs()


def scheduler_of(runs: Runs, clock: Clock, **policy) -> TrainingScheduler:
    return TrainingScheduler(TriggerPolicy(**({"min_labels": 2} | policy)), runs, clock=clock)


def command(command: str, run_id: str | None = None, age_s: float = 0.0) -> Received:
    record = TrainingRequested(command=command, run_id=run_id, created_at=datetime.now(UTC) - timedelta(seconds=age_s))
    value = topics.TRAINING_COMMANDS.encode(record)
    return Received(record, topics.TRAINING_COMMANDS.name, 0, 0, None, value)


def test_no_run_before_enough_distinct_labels(runs, clock):
    scheduler = scheduler_of(runs, clock, min_labels=3)
    scheduler.add(["a", "b", "a", "b"])
    assert scheduler.pending == 2 and scheduler.running is None and runs.started == []


def test_run_starts_at_the_threshold_and_labels_during_it_count_toward_the_next(runs, clock):
    scheduler = scheduler_of(runs, clock)
    scheduler.add(["a", "b"])
    first = runs.wait_for_start()
    assert scheduler.running == first and scheduler.pending == 0
    scheduler.add(["c", "d", "e"])  # consumption goes on while the run holds
    assert runs.started == [first] and scheduler.pending == 3
    runs.release.set()
    runs.wait_for_start()  # the pending labels start the next run by themselves
    scheduler.wait(WAIT_S)
    assert len(runs.started) == 2 and scheduler.pending == 0 and scheduler.running is None


def test_a_failed_run_does_not_stop_the_scheduler(clock):
    attempts = []

    def failing(run_id: str, cancel: threading.Event) -> None:
        attempts.append(run_id)
        raise RuntimeError("boom")

    scheduler = TrainingScheduler(TriggerPolicy(min_labels=1), failing, clock=clock)
    scheduler.add(["a"])
    scheduler.wait(WAIT_S)
    scheduler.add(["b"])
    scheduler.wait(WAIT_S)
    assert len(attempts) == 2 and scheduler.running is None


def test_a_burst_of_labels_is_trained_on_whole_once_it_is_quiet(runs, clock):
    runs.release.set()
    scheduler = scheduler_of(runs, clock, quiet_s=10.0)
    scheduler.add(["a", "b"])
    clock.now = 5.0
    scheduler.add(["c"])  # the burst goes on: the quiet period starts again
    clock.now = 12.0
    assert not scheduler.check().start and runs.started == []
    clock.now = 15.0
    assert scheduler.check().reason == "threshold"
    scheduler.wait(WAIT_S)
    assert len(runs.started) == 1 and scheduler.pending == 0
    scheduler.shutdown()


def test_after_the_interval_fewer_labels_suffice(runs, clock):
    runs.release.set()
    scheduler = scheduler_of(runs, clock, min_labels=100, interval_s=60.0, interval_min_labels=2)
    scheduler.add(["a", "b"])
    assert runs.started == []
    clock.now = 61.0
    assert scheduler.check().reason == "interval"
    scheduler.wait(WAIT_S)
    assert len(runs.started) == 1
    scheduler.shutdown()


def test_an_operator_request_runs_with_no_new_label_and_waits_for_a_running_run(runs, clock):
    scheduler = scheduler_of(runs, clock, min_labels=50)
    scheduler.command([command("train")])
    first = runs.wait_for_start()
    scheduler.request()  # during the run: queued, not lost
    assert runs.started == [first]
    runs.release.set()
    runs.wait_for_start()
    scheduler.wait(WAIT_S)
    assert len(runs.started) == 2


def test_stale_commands_are_ignored(runs, clock):
    scheduler = scheduler_of(runs, clock)
    scheduler.command([command("train", age_s=3600)])
    assert runs.started == [] and scheduler.running is None


def test_cancel_stops_the_running_run_and_the_worker_goes_on(runs, clock):
    scheduler = scheduler_of(runs, clock)
    scheduler.add(["a", "b"])
    run_id = runs.wait_for_start()
    assert scheduler.cancel("some-other-run") is None  # only the named run
    scheduler.command([command("cancel", run_id=run_id)])
    scheduler.wait(WAIT_S)
    assert runs.cancelled == [run_id] and scheduler.running is None
    assert scheduler.cancel() is None  # nothing to cancel now
    runs.release.set()
    scheduler.add(["c", "d"])
    scheduler.wait(WAIT_S)
    assert len(runs.started) == 2 and runs.cancelled == [run_id]


def test_cancel_without_a_run_id_also_drops_a_queued_request(runs, clock):
    scheduler = scheduler_of(runs, clock, min_labels=50)
    scheduler.request()
    run_id = runs.wait_for_start()
    scheduler.request()
    assert scheduler.cancel() == run_id
    scheduler.wait(WAIT_S)
    assert runs.started == [run_id] and scheduler.running is None


def test_shutdown_cancels_the_running_run_and_starts_no_other(runs, clock):
    scheduler = scheduler_of(runs, clock)
    scheduler.add(["a", "b"])
    run_id = runs.wait_for_start()
    scheduler.add(["c", "d"])
    scheduler.shutdown()
    scheduler.wait(WAIT_S)
    assert runs.cancelled == [run_id] and runs.started == [run_id] and scheduler.running is None
