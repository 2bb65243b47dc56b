from __future__ import annotations

import threading

from trainer.worker import TrainingScheduler


class BlockingRuns:
    """A stand-in training run that holds until released, recording each run it was asked for."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.release = threading.Event()
        self.entered = threading.Semaphore(0)

    def __call__(self, run_id: str) -> None:
        self.started.append(run_id)
        self.entered.release()
        self.release.wait(30)


def test_no_run_before_enough_distinct_labels():
    runs = BlockingRuns()
    scheduler = TrainingScheduler(3, runs)
    scheduler.add(["a", "b", "a", "b"])
    assert scheduler.pending == 2 and not scheduler.running and runs.started == []


def test_run_starts_at_the_threshold_and_labels_during_it_count_toward_the_next():
    runs = BlockingRuns()
    scheduler = TrainingScheduler(2, runs)
    scheduler.add(["a", "b"])
    assert runs.entered.acquire(timeout=30)
    assert scheduler.running and scheduler.pending == 0
    scheduler.add(["c", "d", "e"])  # consumption goes on while the run holds
    assert len(runs.started) == 1 and scheduler.pending == 3
    runs.release.set()
    assert runs.entered.acquire(timeout=30)  # the pending labels start the next run by themselves
    scheduler.wait(30)
    assert len(runs.started) == 2 and scheduler.pending == 0


def test_a_failed_run_does_not_stop_the_scheduler():
    attempts = []

    def failing(run_id: str) -> None:
        attempts.append(run_id)
        raise RuntimeError("boom")

    scheduler = TrainingScheduler(1, failing)
    scheduler.add(["a"])
    scheduler.wait(30)
    scheduler.add(["b"])
    scheduler.wait(30)
    assert len(attempts) == 2 and not scheduler.running


def test_no_new_run_once_stopping():
    stop = threading.Event()
    runs = BlockingRuns()
    scheduler = TrainingScheduler(1, runs, stop)
    stop.set()
    scheduler.add(["a"])
    assert runs.started == [] and not scheduler.running


def test_a_burst_of_labels_is_trained_on_whole_once_it_ends():
    runs = BlockingRuns()
    runs.release.set()
    scheduler = TrainingScheduler(2, runs, quiet_s=0.5)
    scheduler.add(["a", "b"])
    scheduler.add(["c"])
    assert runs.started == [] and scheduler.pending == 3, "no run while labels keep coming"
    assert runs.entered.acquire(timeout=30)
    scheduler.wait(30)
    assert len(runs.started) == 1 and scheduler.pending == 0
