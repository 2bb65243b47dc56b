"""`ctrlgpt trainer`: label events trigger training runs.

Consumes `topics.LABELS` and counts the distinct label_ids that arrived since the last run
started; once `settings.train_min_labels` have, a run (`pipeline.run`) starts in a background
thread. One run at a time; consuming never waits for training, and labels that arrive during a
run count toward the next one, which starts as soon as the running one ends.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable

import structlog

from ctrlgpt.lifecycle import stop_on_signals
from ctrlgpt.settings import Settings
from streams import bus, topics
from streams.bus import Received
from streams.records import LabelRecorded
from trainer import hf, pipeline

__all__ = ["TrainingScheduler", "main"]

log = structlog.get_logger()

GROUP = "ctrlgpt-trainer"
STAGE = "train"


class TrainingScheduler:
    """Counts new distinct label ids and starts `start_run` in a thread when enough have arrived."""

    def __init__(
        self,
        min_labels: int,
        start_run: Callable[[str], object],
        stop: threading.Event | None = None,
        quiet_s: float = 0.0,
    ) -> None:
        self.min_labels = min_labels
        self.quiet_s = quiet_s
        self._last_label_at = 0.0
        self._quiet_timer: threading.Timer | None = None
        self._start_run = start_run
        self._stop = stop
        self._lock = threading.Lock()
        self._pending: set[str] = set()
        self._thread: threading.Thread | None = None
        self._running = False

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    @property
    def running(self) -> bool:
        with self._lock:
            return self._running

    def add(self, label_ids: Iterable[str]) -> None:
        with self._lock:
            self._pending.update(label_ids)
            self._last_label_at = time.monotonic()
            if self.quiet_s > 0:
                # A person labels in bursts: train on the whole burst, not its first few labels.
                if self._quiet_timer is not None:
                    self._quiet_timer.cancel()
                self._quiet_timer = threading.Timer(self.quiet_s, self._maybe_start)
                self._quiet_timer.daemon = True
                self._quiet_timer.start()
        self._maybe_start()

    def write(self, batch: list[Received]) -> None:
        """The `write` of `bus.consume`: counting only, never blocked by a run."""
        self.add(received.record.label_id for received in batch if isinstance(received.record, LabelRecorded))

    def wait(self, timeout: float | None = None) -> None:
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _maybe_start(self) -> None:
        with self._lock:
            stopping = self._stop is not None and self._stop.is_set()
            burst_going_on = time.monotonic() - self._last_label_at < self.quiet_s
            if stopping or self._running or burst_going_on or len(self._pending) < self.min_labels:
                return
            labels, self._pending = len(self._pending), set()
            self._running = True
            run_id = uuid.uuid4().hex
            thread = self._thread = threading.Thread(target=self._run, args=(run_id,), name=f"training-{run_id[:8]}")
        log.info("trainer.run_starting", run_id=run_id, new_labels=labels)
        thread.start()

    def _run(self, run_id: str) -> None:
        try:
            self._start_run(run_id)
        except Exception:  # noqa: BLE001 - the run reported its failure; the worker keeps consuming
            log.exception("trainer.run_failed", run_id=run_id)
        finally:
            with self._lock:
                self._running = False
            self._maybe_start()  # labels that arrived during the run


def main(settings: Settings, args: object) -> int:
    pipeline.rl_stage(settings.rl_algorithm)  # an unknown algorithm stops the worker now, not at the first run
    hf.quiet_libraries()
    stop = stop_on_signals()
    bus.ensure_topics(
        settings, [topics.LABELS, topics.TRAINING_RUNS, topics.MODEL_UPDATES, topics.dead_letter_topic(STAGE)]
    )
    scheduler = TrainingScheduler(
        settings.train_min_labels,
        lambda run_id: pipeline.run(settings, run_id=run_id, stop=stop),
        stop,
        quiet_s=settings.train_quiet_s,
    )
    log.info("trainer.started", min_labels=settings.train_min_labels, rl_algorithm=settings.rl_algorithm)
    bus.consume(settings, group=GROUP, topic=topics.LABELS, stage=STAGE, write=scheduler.write, stop=stop)
    scheduler.wait()
    return 0
