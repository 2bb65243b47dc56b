"""`ctrlgpt trainer`: label events and operator commands start training runs; a cancel stops one.

Two consumer loops, one thread each: `topics.LABELS` (counted, distinct label ids) and
`topics.TRAINING_COMMANDS` (train now / cancel). When a run starts is `trigger.decide`'s call;
the run itself (`pipeline.run`) goes in a background thread, one at a time, with its own cancel
event: consuming never waits for training, and labels that arrive during a run count toward the
next one. A cancelled run ends with a `cancelled` progress event and registers nothing; its labels
are not counted again (the next run reads every label on Kafka anyway). Stopping the worker
cancels the running run the same way.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from confluent_kafka import KafkaException, TopicPartition

from ctrlgpt.lifecycle import stop_on_signals
from ctrlgpt.retry import Backoff
from ctrlgpt.settings import Settings
from models import devices, operations
from streams import bus, groups, topics
from streams.bus import Received
from streams.records import LabelRecorded, Stage, TrainingRequested
from streams.topics import Topic
from trainer import hf, pipeline
from trainer.progress import RunCancelled
from trainer.trigger import (
    Decision,
    TriggerPolicy,
    TriggerState,
    command_is_stale,
    decide,
)

__all__ = ["TrainingScheduler", "main", "policy_of", "serve"]

log = structlog.get_logger()

STAGE: Stage = "train"
# A consumer that ran this long before failing was healthy: its next restart waits the first delay again.
HEALTHY_RUN_S = 300.0

StartRun = Callable[[str, threading.Event], object]


def policy_of(settings: Settings) -> TriggerPolicy:
    return TriggerPolicy(
        min_labels=settings.train_min_labels,
        quiet_s=settings.train_quiet_s,
        interval_s=settings.train_interval_s,
        interval_min_labels=settings.train_interval_min_labels,
    )


@dataclass(frozen=True)
class _Run:
    run_id: str
    cancel: threading.Event
    thread: threading.Thread


class TrainingScheduler:
    """Keeps the trigger's state, starts `start_run(run_id, cancel)` in a thread when `decide` says so."""

    def __init__(
        self,
        policy: TriggerPolicy,
        start_run: StartRun,
        *,
        command_max_age_s: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy
        self.command_max_age_s = command_max_age_s
        self._start_run = start_run
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: set[str] = set()
        self._last_label_at: float | None = None
        self._last_run_at = clock()
        self._requested = False
        self._stopping = False
        self._run: _Run | None = None
        self._last_thread: threading.Thread | None = None
        self._timer: threading.Timer | None = None

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    @property
    def running(self) -> str | None:
        """The running run's id, or None."""
        with self._lock:
            return self._run.run_id if self._run else None

    def add(self, label_ids: Iterable[str]) -> None:
        with self._lock:
            before = len(self._pending)
            self._pending.update(label_ids)
            pending = len(self._pending)
            if pending > before:
                self._last_label_at = self._clock()
        # What the next run will count, for operators (and for the outage test, which reads it here).
        log.info("trainer.labels_pending", new=pending - before, pending=pending)
        self.check()

    def request(self, requested_by: str = "operator", reason: str = "") -> None:
        """Train now, even with no new label; after the running run, if one is going on."""
        with self._lock:
            self._requested = True
        log.info("trainer.run_requested", requested_by=requested_by, reason=reason)
        self.check()

    def cancel(self, run_id: str | None = None) -> str | None:
        """Stop the running run (any, or only `run_id`); returns the id of the run told to stop.

        A cancel without a run id also drops a "train now" not started yet: it means "no training now".
        """
        with self._lock:
            if run_id is None:
                self._requested = False
            run = self._run
            if run is None or (run_id is not None and run_id != run.run_id):
                log.info("trainer.cancel_ignored", run_id=run_id, running=run.run_id if run else None)
                return None
            run.cancel.set()
        log.info("trainer.run_cancelling", run_id=run.run_id)
        return run.run_id

    def write(self, batch: list[Received]) -> None:
        """The `write` of the labels' `bus.consume`: counting only, never blocked by a run."""
        self.add(received.record.label_id for received in batch if isinstance(received.record, LabelRecorded))

    def command(self, batch: list[Received], now: datetime | None = None) -> None:
        """The `write` of the commands' `bus.consume`."""
        now = now or datetime.now(UTC)
        for received in batch:
            command = received.record
            if not isinstance(command, TrainingRequested):
                continue
            if command_is_stale(command.created_at, now, self.command_max_age_s):
                log.info("trainer.command_stale", command=command.command, created_at=command.created_at.isoformat())
            elif command.command == "train":
                self.request(command.requested_by, command.reason)
            else:
                self.cancel(command.run_id)

    def shutdown(self) -> None:
        """No new run from now on; the running one is cancelled."""
        with self._lock:
            self._stopping = True
            if self._timer is not None:
                self._timer.cancel()
            run = self._run
        if run is not None:
            run.cancel.set()

    def wait(self, timeout: float | None = None) -> None:
        """Until the latest run started has ended."""
        thread = self._last_thread
        if thread is not None:
            thread.join(timeout)

    def check(self) -> Decision:
        """Ask the trigger now; start a run, or look again when time alone may change the answer."""
        with self._lock:
            now = self._clock()
            decision = decide(
                self.policy,
                TriggerState(
                    now=now,
                    pending_labels=len(self._pending),
                    last_label_at=self._last_label_at,
                    last_run_at=self._last_run_at,
                    requested=self._requested,
                    running=self._run is not None,
                    stopping=self._stopping,
                ),
            )
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if not decision.start:
                if decision.recheck_in is not None and not self._stopping:
                    self._timer = threading.Timer(decision.recheck_in, self.check)
                    self._timer.daemon = True
                    self._timer.start()
                return decision
            labels, self._pending, self._requested = len(self._pending), set(), False
            self._last_run_at = now
            run_id = uuid.uuid4().hex
            cancel = threading.Event()
            thread = threading.Thread(target=self._execute, args=(run_id, cancel), name=f"training-{run_id[:8]}")
            self._run = _Run(run_id, cancel, thread)
            self._last_thread = thread
        log.info("trainer.run_starting", run_id=run_id, reason=decision.reason, new_labels=labels)
        thread.start()
        return decision

    def _execute(self, run_id: str, cancel: threading.Event) -> None:
        try:
            self._start_run(run_id, cancel)
        except RunCancelled as exc:
            log.info("trainer.run_cancelled", run_id=run_id, detail=str(exc))
        except Exception:
            log.exception("trainer.run_failed", run_id=run_id)
        finally:
            with self._lock:
                self._run = None
            self.check()  # labels or a request that arrived during the run


def serve(
    settings: Settings,
    scheduler: TrainingScheduler,
    stop: threading.Event,
    *,
    labels: Topic = topics.LABELS,
    commands: Topic = topics.TRAINING_COMMANDS,
    group: str,
    commands_group: str | None = None,
) -> None:
    """Consume labels and commands until `stop`; then cancel the running run and wait for it.

    Raises when either loop failed: half a worker (labels without commands, or the reverse) is worse than a restart.
    """
    failed: list[str] = []

    def loop(topic: Topic, consumer_group: str, write: Callable[[list[Received]], None]) -> None:
        try:
            consume_through_outages(settings, consumer_group, topic, write, stop)
        except Exception:
            log.exception("trainer.consumer_failed", topic=topic.name)
            failed.append(topic.name)
            stop.set()

    threads = [
        threading.Thread(target=loop, args=(labels, group, scheduler.write), name="labels"),
        threading.Thread(
            target=loop,
            args=(commands, commands_group or groups.trainer_commands(group), scheduler.command),
            name="commands",
        ),
    ]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            thread.join()
    finally:
        scheduler.shutdown()
        scheduler.wait()
    if failed:
        raise RuntimeError(f"consuming {', '.join(failed)} failed; see the log")


def consume_through_outages(
    settings: Settings, group: str, topic: Topic, write: Callable[[list[Received]], None], stop: threading.Event
) -> None:
    """`bus.consume` until `stop`, started again (with the shared back-off) whenever Kafka fails it.

    `bus.consume` pauses through an outage itself; what still escapes it is an error that wants a new
    client (librdkafka's fatal errors; before streams.bus retried its commits, the UNKNOWN_MEMBER_ID of a
    member the group forgot while the broker was away). A new consumer rejoins the group and reads on
    from the last commit. What was read but not committed comes again: a label id already pending
    counts once, and a command read twice at worst asks for the same run or cancel again.
    """
    backoff = Backoff()
    while not stop.is_set():
        began = time.monotonic()
        try:
            bus.consume(settings, group=group, topic=topic, stage=STAGE, write=write, stop=stop)
        except (KafkaException, bus.ServiceUnavailable) as exc:
            # A consumer that ran well for a while starts again from the first delay: weeks of
            # operation must not leave every later outage on the longest wait.
            if time.monotonic() - began > HEALTHY_RUN_S:
                backoff.reset()
            delay = backoff.next_delay()
            log.warning("trainer.consumer_restarting", topic=topic.name, error=str(exc), retry_in_s=round(delay, 2))
            stop.wait(delay)


def main(settings: Settings, args: object) -> int:
    # An unknown rl_algorithm never gets here (the settings refuse it); device=cuda without a GPU stops here.
    log.info("trainer.device", device=str(devices.of(settings)))
    hf.quiet_libraries()
    stop = stop_on_signals()
    bus.ensure_topics(
        settings,
        [
            topics.LABELS,
            topics.TRAINING_COMMANDS,
            topics.TRAINING_RUNS,
            topics.MODEL_UPDATES,
            topics.dead_letter_topic(STAGE),
        ],
    )
    scheduler = TrainingScheduler(
        policy_of(settings),
        lambda run_id, cancel: pipeline.run(settings, run_id=run_id, stop=cancel),
        command_max_age_s=settings.train_command_max_age_s,
    )
    log.info("trainer.started", policy=str(scheduler.policy), rl_algorithm=settings.rl_algorithm)
    announce_current_versions(settings, stop)
    if nothing_to_serve_yet_labels_waiting(settings):
        # E.g. a data directory from before per-target registries: its labels were consumed long ago,
        # so no new label would ever trigger the run that gives the API something to serve.
        scheduler.request(requested_by="trainer", reason="labels on Kafka but no version of the default target")
    serve(settings, scheduler, stop, group=settings.trainer_group)
    return 0


def announce_current_versions(settings: Settings, stop: threading.Event) -> None:
    """Make the model-updates topic name each target's current version, as a replica starting now needs.

    Kafka away: this waits for it, as every stage does. The model store away: logged, and the worker
    goes on with its labels (a replica keeps what it serves; the next start or promotion announces).
    """
    try:
        operations.reannounce_current(settings, stop=stop)
    except Exception:  # any store failure (boto3, a full disk) must not stop the trainer taking labels
        log.exception("trainer.reannounce_failed")


def nothing_to_serve_yet_labels_waiting(settings: Settings, labels: Topic = topics.LABELS) -> bool:
    """No version of the default target's policy, but enough label events on Kafka for a run."""
    if operations.registry_for(settings).current() is not None:
        return False
    consumer = bus.make_consumer(settings, groups.trainer_probe(settings.trainer_group))
    try:
        partitions = consumer.list_topics(labels.name, timeout=10).topics[labels.name].partitions
        events = 0
        for partition in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(labels.name, partition), timeout=10)
            events += high - low
    finally:
        consumer.close()
    return events >= settings.train_min_labels
