"""What the dashboard and /metrics know of training runs and model versions, folded from their topics.

`TrainingRuns` and `ModelVersions` are pure folds of `TrainingRunProgressed` and
`ModelPromoted` records. `EventFollower` is the I/O: a thread that reads both topics
from their beginning (no group commits: every API replica sees all of them) and
feeds the folds. A record that does not decode is logged and counted; the stages
that own these topics dead-letter it, this observer only reports it. Kafka away is a
pause: the follower waits for the broker and the topics with the shared retry policy,
then keeps polling (librdkafka reconnects by itself) and never dies of one bad round.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from dataclasses import dataclass, field

import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from ctrlgpt.retry import Backoff, retrying
from ctrlgpt.settings import Settings
from streams import groups, topics
from streams.records import ModelPromoted, TrainingRunProgressed
from streams.topics import ContractError

__all__ = ["EventFollower", "ModelVersions", "TrainingRuns"]

log = structlog.get_logger()


class TopicsMissing(RuntimeError):
    """The topics to follow do not exist yet (nothing has created them)."""


@dataclass
class TrainingRuns:
    """The latest `max_runs` runs with their reward, KL and loss curves; every run's latest stage."""

    max_runs: int = 20
    max_points: int = 2000
    _runs: OrderedDict[str, dict] = field(init=False, default_factory=OrderedDict)
    _stages: dict[str, str] = field(init=False, default_factory=dict)

    def add(self, event: TrainingRunProgressed) -> None:
        self._stages[event.run_id] = event.stage
        run = self._runs.get(event.run_id)
        if run is None:
            run = {
                "run_id": event.run_id,
                "started_at": event.created_at.isoformat(),
                "points": deque(maxlen=self.max_points),
            }
            self._runs[event.run_id] = run
            while len(self._runs) > self.max_runs:
                self._runs.popitem(last=False)
        run.update(
            stage=event.stage,
            updated_at=event.created_at.isoformat(),
            message=event.message,
            step=event.step,
            total_steps=event.total_steps,
        )
        if any(value is not None for value in (event.reward, event.kl, event.loss)):
            run["points"].append(
                {
                    "stage": event.stage,
                    "step": event.step,
                    "reward": event.reward,
                    "kl": event.kl,
                    "loss": event.loss,
                    "at": event.created_at.isoformat(),
                }
            )

    def by_stage(self) -> dict[str, int]:
        """How many runs are at each stage now (a run's last event); done/failed/cancelled are final."""
        counts: dict[str, int] = {}
        for stage in self._stages.values():
            counts[stage] = counts.get(stage, 0) + 1
        return counts

    def recent(self) -> list[dict]:
        """Newest first, each with its points oldest first."""
        return [{**run, "points": list(run["points"])} for run in reversed(self._runs.values())]


@dataclass
class ModelVersions:
    """Every model-update record seen (newest last, at most `max_versions`): versions with their metrics."""

    max_versions: int = 200
    _versions: deque[dict] = field(init=False)

    def __post_init__(self) -> None:
        self._versions = deque(maxlen=self.max_versions)

    def add(self, record: ModelPromoted) -> None:
        self._versions.append(
            {
                "model_name": record.model_name,
                "version": record.version,
                "action": record.action,
                "reason": record.reason,
                "parent_version": record.parent_version,
                "metrics": dict(record.metrics),
                "at": record.created_at.isoformat(),
            }
        )

    def all(self) -> list[dict]:
        return list(self._versions)


class EventFollower:
    """Reads the training-runs and model-updates topics into `runs` and `versions` until `stop()`."""

    def __init__(self, settings: Settings, runs: TrainingRuns, versions: ModelVersions, lock: threading.Lock) -> None:
        self._settings = settings
        self.runs, self.versions, self._lock = runs, versions, lock
        self.undecodable = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ops-events", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    def _run(self) -> None:
        wanted = {topics.TRAINING_RUNS.name: topics.TRAINING_RUNS, topics.MODEL_UPDATES.name: topics.MODEL_UPDATES}
        consumer = Consumer(
            {
                "bootstrap.servers": self._settings.kafka_bootstrap,
                "group.id": groups.ops_observer(),  # never commits: a fresh read each start
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )
        try:
            try:
                for attempt in retrying(
                    (KafkaException, TopicsMissing), what="ops events: Kafka and topics", stop=self._stop
                ):
                    with attempt:
                        self._assign(consumer, list(wanted))
            except (KafkaException, TopicsMissing):
                return  # stopped while waiting
            backoff = Backoff()
            while not self._stop.is_set():
                try:
                    self._poll_once(consumer, wanted)
                    backoff.reset()
                except Exception:
                    delay = backoff.next_delay()
                    log.exception("ops.events_round_failed", retry_in_s=round(delay, 2))
                    self._stop.wait(delay)
        finally:
            consumer.close()

    def _poll_once(self, consumer: Consumer, wanted: dict[str, topics.Topic]) -> None:
        msg = consumer.poll(0.5)
        if msg is None:
            return
        if msg.error():
            if msg.error().code() != KafkaError._PARTITION_EOF:
                log.warning("ops.events_error", error=str(msg.error()))
            return
        self._fold(wanted[msg.topic()], msg)

    @staticmethod
    def _assign(consumer: Consumer, names: list[str]) -> None:
        """Assign every partition of the topics from offset 0; `TopicsMissing` while one does not exist."""
        metadata = consumer.list_topics(timeout=5).topics
        missing = [name for name in names if name not in metadata]
        if missing:
            raise TopicsMissing(f"waiting for topics {missing}")
        consumer.assign([TopicPartition(name, p, 0) for name in names for p in metadata[name].partitions])

    def _fold(self, topic: topics.Topic, msg) -> None:
        try:
            record = topic.decode(msg.value())
        except ContractError as exc:
            if msg.value() is None:
                return  # a tombstone on the compacted topic: nothing was promoted
            self.undecodable += 1
            log.warning("ops.undecodable_record", topic=msg.topic(), offset=msg.offset(), reason=str(exc)[:300])
            return
        with self._lock:
            if isinstance(record, TrainingRunProgressed):
                self.runs.add(record)
            else:
                self.versions.add(record)
