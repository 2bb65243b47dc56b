"""Follow the model-updates topic and hot-swap each announced version in.

Every replica reads the compacted topic from its beginning in its own consumer
group and commits nothing: on start it learns the current version, then each
promotion that follows. A version is loaded beside the one serving and swapped in
only once it is verified and warmed up; a version that fails to load leaves the
old one serving and is dead-lettered with the reason.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import structlog
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, Producer, TopicPartition

from api.model_loader import load_version
from api.served_model import ModelHolder
from ctrlgpt.settings import Settings
from streams import bus, topics
from streams.records import ModelPromoted
from streams.topics import ContractError, Topic

log = structlog.get_logger()

STAGE = "api"


@dataclass(frozen=True)
class Announcement:
    """A decoded `ModelPromoted` with the message it came in (for dead letters)."""

    record: ModelPromoted
    partition: int
    offset: int
    key: bytes | None
    value: bytes


@dataclass(frozen=True)
class Outcome:
    action: Literal["swapped", "already_serving", "failed"]
    version: str
    previous: str | None = None
    error: Exception | None = None


def replica_id(settings: Settings) -> str:
    return settings.api_replica_id or f"{socket.gethostname()}-{settings.api_port}"


def consumer_group(settings: Settings) -> str:
    return f"ctrlgpt-api-{replica_id(settings)}"


def latest_for(announcements: Sequence[Announcement], model_name: str) -> tuple[Announcement | None, list[str]]:
    """The last announcement for `model_name` and the versions it supersedes (the partition is ordered)."""
    mine = [a for a in announcements if a.record.model_name == model_name]
    if not mine:
        return None, []
    return mine[-1], [a.record.version for a in mine[:-1]]


def version_dir(settings: Settings, path: str) -> Path:
    """The announced directory; a relative path is taken under the model registry."""
    announced = Path(path)
    return announced if announced.is_absolute() else settings.registry_dir / announced


def apply(settings: Settings, holder: ModelHolder, record: ModelPromoted) -> Outcome:
    """Load the announced version and swap it in; on any failure the served version stays."""
    current = holder.current
    if current is not None and current.version == record.version:
        return Outcome("already_serving", record.version, previous=record.version)
    try:
        served = load_version(version_dir(settings, record.path), record.manifest_sha256, expected_version=record.version)
    except Exception as exc:  # noqa: BLE001 - whatever breaks a load, the old version keeps serving
        return Outcome("failed", record.version, previous=current.version if current else None, error=exc)
    previous = holder.swap(served)
    return Outcome("swapped", record.version, previous=previous)


class ModelUpdates:
    """A background thread that consumes the model-updates topic until `stop()`."""

    def __init__(
        self, settings: Settings, holder: ModelHolder, *, topic: Topic = topics.MODEL_UPDATES, poll_timeout: float = 1.0
    ) -> None:
        self._settings = settings
        self._holder = holder
        self._topic = topic
        self._poll_timeout = poll_timeout
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="model-updates", daemon=True)
        self._log = log.bind(group=consumer_group(settings), model_name=settings.policy_name)
        self._log_context = structlog.contextvars.get_contextvars()  # the service name, for this thread's lines too

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._log.warning("model_updates.stop_timed_out", timeout_s=timeout)

    def _run(self) -> None:
        structlog.contextvars.bind_contextvars(**self._log_context)
        # Own group, nothing committed, and every assignment rewound: a replica
        # always rebuilds its state from the compacted topic. A short session
        # lets a restarted replica take its partition back soon after a crash.
        consumer = bus.make_consumer(self._settings, consumer_group(self._settings), **{"session.timeout.ms": 10_000})
        producer = bus.make_producer(self._settings)
        consumer.subscribe([self._topic.name], on_assign=_from_beginning)
        self._log.info("model_updates.started", topic=self._topic.name)
        try:
            while not self._stop.is_set():
                messages = consumer.consume(num_messages=100, timeout=self._poll_timeout)
                try:
                    self._handle(messages, producer)
                except Exception:  # noqa: BLE001 - the follower must outlive any one bad batch
                    self._log.exception("model_updates.batch_failed")
                    self._stop.wait(self._poll_timeout)
        finally:
            consumer.close()
            producer.flush(10)
            self._log.info("model_updates.stopped")

    def _handle(self, messages: list[Message], producer: Producer) -> None:
        announcements = [a for msg in messages if (a := self._decode(msg, producer)) is not None]
        latest, superseded = latest_for(announcements, self._settings.policy_name)
        if superseded:
            self._log.info("model_updates.superseded", versions=superseded)
        if latest is not None:
            self._apply(latest, producer)
        remaining = producer.flush(10)
        if remaining:
            self._log.error("model_updates.dead_letters_undelivered", count=remaining)

    def _decode(self, msg: Message, producer: Producer) -> Announcement | None:
        if msg.error():
            if msg.error().code() != KafkaError._PARTITION_EOF:
                self._log.warning("model_updates.consumer_error", error=str(msg.error()))
            return None
        if msg.value() is None:
            # A tombstone: compaction's way to retire a model name, not a broken record.
            # Retiring the served name changes nothing here: the loaded version keeps serving.
            if msg.key() == self._settings.policy_name.encode():
                self._log.info("model_updates.name_retired", offset=msg.offset())
            return None
        try:
            record = self._topic.decode(msg.value())
        except ContractError as exc:
            bus.send_dead_letter(
                producer, STAGE, source_topic=msg.topic(), value=msg.value(), key=msg.key(),
                partition=msg.partition(), offset=msg.offset(), reason=str(exc), error_type="ContractError",
            )
            return None
        return Announcement(record, msg.partition(), msg.offset(), msg.key(), msg.value())

    def _apply(self, announcement: Announcement, producer: Producer) -> None:
        record = announcement.record
        self._log.info("model_updates.announced", version=record.version, path=record.path, offset=announcement.offset)
        outcome = apply(self._settings, self._holder, record)
        if outcome.action == "swapped":
            self._log.info("model.swapped", version=outcome.version, previous=outcome.previous)
        elif outcome.action == "already_serving":
            self._log.info("model_updates.already_serving", version=outcome.version)
        else:
            serving = outcome.previous or "no version"
            reason = f"version {record.version} from {record.path} not loaded, {serving} keeps serving: {outcome.error}"
            self._log.error(
                "model.load_failed", version=record.version, serving=outcome.previous,
                error=str(outcome.error), error_type=type(outcome.error).__name__,
            )
            bus.send_dead_letter(
                producer, STAGE, source_topic=self._topic.name, value=announcement.value, key=announcement.key,
                partition=announcement.partition, offset=announcement.offset, reason=reason,
                error_type=type(outcome.error).__name__,
            )


def _from_beginning(consumer: Consumer, partitions: list[TopicPartition]) -> None:
    for partition in partitions:
        partition.offset = OFFSET_BEGINNING
    consumer.assign(partitions)
