"""When the trainer starts a run: a pure decision on counts and times, no threads, no Kafka.

A run starts when
    - `min_labels` new labels arrived, or
    - `interval_s` passed since the last run started (or the worker did) with at least
      `interval_min_labels` new labels, or
    - an operator asked for one (`TrainingRequested(command="train")`), even with no new label;
and never while a run is going on or the worker is stopping. Label-driven starts also wait until
no label has come for `quiet_s`, so a labeling burst is trained on whole; an operator's request
does not wait. `decide` also says when to look again, so the caller needs only one timer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

__all__ = ["Decision", "TriggerPolicy", "TriggerState", "command_is_stale", "decide"]

Reason = Literal["requested", "threshold", "interval"]


@dataclass(frozen=True)
class TriggerPolicy:
    min_labels: int
    quiet_s: float = 0.0
    interval_s: float = 0.0  # 0: no time-based trigger
    interval_min_labels: int = 1

    def __post_init__(self) -> None:
        if self.min_labels < 1 or self.interval_min_labels < 1:
            raise ValueError("min_labels and interval_min_labels must be at least 1")
        if self.quiet_s < 0 or self.interval_s < 0:
            raise ValueError("quiet_s and interval_s must not be negative")


@dataclass(frozen=True)
class TriggerState:
    """What the scheduler knows at `now` (monotonic seconds)."""

    now: float
    pending_labels: int
    last_label_at: float | None
    last_run_at: float  # when the last run started; the worker's start before the first run
    requested: bool = False
    running: bool = False
    stopping: bool = False


@dataclass(frozen=True)
class Decision:
    start: bool
    reason: Reason | None = None
    recheck_in: float | None = None  # seconds until the answer may change by time alone; None: only new events


def decide(policy: TriggerPolicy, state: TriggerState) -> Decision:
    if state.stopping or state.running:
        return Decision(False)  # the end of the run (or of the worker) is the next event
    if state.requested:
        return Decision(True, "requested")
    quiet_left = 0.0
    if state.last_label_at is not None:
        quiet_left = max(0.0, state.last_label_at + policy.quiet_s - state.now)
    interval_left = None
    if policy.interval_s > 0 and state.pending_labels >= policy.interval_min_labels:
        interval_left = max(0.0, state.last_run_at + policy.interval_s - state.now)
    if state.pending_labels >= policy.min_labels:
        return Decision(True, "threshold") if quiet_left == 0 else Decision(False, recheck_in=quiet_left)
    if interval_left is None:
        return Decision(False)
    wait = max(quiet_left, interval_left)
    return Decision(True, "interval") if wait == 0 else Decision(False, recheck_in=wait)


def command_is_stale(created_at: datetime, now: datetime, max_age_s: float) -> bool:
    """An operator command older than this is history (e.g. re-read by a new consumer group), not a request."""
    return now - created_at > timedelta(seconds=max_age_s)
