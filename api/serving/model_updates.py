"""Follow the model-updates topic and hot-swap each announced version in.

Every replica reads the compacted topic from its beginning in its own consumer
group and commits nothing: on start it learns the current version of every model
name it serves (each target's policy, `settings.policy_for(target)`), then each
promotion that follows; records of other names are skipped. Only the registry picks what is
served: an announcement is admitted when its signature verifies with the shared key and it names
a version in this replica's own model store (`models.store`), which the replica fetches (from an
object store: into its cache), checking the announced manifest and every file's sha256 and
refusing files the manifest does not list. A version is loaded beside the one serving and swapped in
only once it is verified and warmed up; a version refused, or that fails to load or to warm up,
leaves the old one serving, is dead-lettered with the reason and announced as a
`ModelLoadFailed` on the load-failures topic (which replica, which version it kept).
A replica with nothing to serve yet (it just started) falls back to the last good
version instead (api/serving/fallback.py) and says so in `/health`.

The model store away is a pause too, not a refusal: an announcement whose version cannot be fetched
because the store does not answer (connection refused, a timeout, a 5xx, throttling:
`models.store.StoreUnavailable`) leaves the old version serving without a dead letter or a
`ModelLoadFailed`, is held per model name (`PendingRetries`) and tried again with the shared
back-off until it loads, is refused, or a newer announcement of that name supersedes it; the
holder's `pending` says so to `/health` and `/metrics` meanwhile.

Kafka away is a pause: the consumer keeps polling (librdkafka reconnects and rejoins
the group by itself, and every assignment is rewound to the beginning), so the
follower never dies of it. A record that does not decode, too large ones included, is
dead-lettered with a bounded excerpt of its bytes and the follower goes on.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import structlog
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    Message,
    Producer,
    TopicPartition,
)

from api.serving.fallback import load_last_good
from api.serving.model_loader import load_version
from api.serving.served_model import Fallback, ModelHolder, ModelHolders, PendingUpdate
from ctrlgpt.retry import Backoff
from ctrlgpt.settings import Settings
from models import devices
from models.announcements import is_authentic, signing_key
from models.manifest import ChecksumMismatch, read_manifest
from models.store import StoreUnavailable, locate, store_for
from streams import bus, groups, topics
from streams.records import ModelLoadFailed, ModelPromoted, Stage
from streams.topics import ContractError, Topic

log = structlog.get_logger()

STAGE: Stage = "api"


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
    action: Literal["swapped", "already_serving", "failed", "store_unavailable"]
    version: str
    previous: str | None = None
    error: Exception | None = None
    fallback: str | None = None  # on "failed": the last good version that serves in its place


# An announcement is a few hundred bytes: a record far larger is refused without decoding it
# (its dead letter keeps an excerpt when the whole would not fit: streams.bus.dead_letter).
MAX_ANNOUNCEMENT_BYTES = 64 * 1024


@dataclass(frozen=True)
class Refusal:
    """Why a record of the model-updates topic is not an announcement."""

    reason: str
    error_type: str


def decode_announcement(value: bytes, topic: Topic) -> ModelPromoted | Refusal:
    if len(value) > MAX_ANNOUNCEMENT_BYTES:
        return Refusal(
            f"record of {len(value)} bytes, over the {MAX_ANNOUNCEMENT_BYTES} an announcement may take",
            "RecordTooLarge",
        )
    try:
        return topic.decode(value)
    except ContractError as exc:
        return Refusal(str(exc), "ContractError")


def replica_id(settings: Settings) -> str:
    return settings.api_replica_id or f"{socket.gethostname()}-{settings.api_port}"


def consumer_group(settings: Settings) -> str:
    return groups.api_replica(replica_id(settings))


def latest_for(announcements: Sequence[Announcement], model_name: str) -> tuple[Announcement | None, list[str]]:
    """The last announcement for `model_name` and the versions it supersedes (the partition is ordered)."""
    mine = [a for a in announcements if a.record.model_name == model_name]
    if not mine:
        return None, []
    return mine[-1], [a.record.version for a in mine[:-1]]


@dataclass
class Pending:
    """An announcement held while the model store is unavailable, and when to try it again."""

    announcement: Announcement
    error: str
    since: float  # wall clock (time.time()): when the store was first found unavailable for this version
    due_at: float  # monotonic clock: the next attempt
    backoff: Backoff = field(default_factory=Backoff)

    @property
    def version(self) -> str:
        return self.announcement.record.version


class PendingRetries:
    """Per model name, the one announcement waiting for the model store to come back.

    Held in memory only, which is enough: the follower has consumed the record already (so it must
    be kept somewhere until it loads), and a replica that restarts reads the compacted topic from its
    beginning again, where the latest announcement of every name still is.
    """

    def __init__(self) -> None:
        self._by_name: dict[str, Pending] = {}

    def get(self, model_name: str) -> Pending | None:
        return self._by_name.get(model_name)

    def supersede(self, model_name: str, arrived: Announcement) -> str | None:
        """A newer announcement of `model_name` arrived: drop the held one unless it names the same
        version (whose back-off goes on); returns the version dropped."""
        held = self._by_name.get(model_name)
        if held is None or held.version == arrived.record.version:
            return None
        del self._by_name[model_name]
        return held.version

    def due(self, model_name: str, now: float) -> Announcement | None:
        """The held announcement of `model_name`, once its next attempt is due (monotonic `now`)."""
        held = self._by_name.get(model_name)
        return held.announcement if held is not None and now >= held.due_at else None

    def hold(self, announcement: Announcement, error: Exception, now: float, wall: float) -> tuple[Pending, float]:
        """Keep `announcement` for another attempt; returns the slot and the delay until it is due, which grows
        while the same version stays unfetchable and starts again from the first delay for another version."""
        name, version = announcement.record.model_name, announcement.record.version
        held = self._by_name.get(name)
        if held is None or held.version != version:
            held = self._by_name[name] = Pending(announcement, str(error), since=wall, due_at=now)
        delay = held.backoff.next_delay()
        held.announcement, held.error, held.due_at = announcement, str(error), now + delay
        return held, delay

    def release(self, model_name: str) -> Pending | None:
        """The held announcement of `model_name` was settled (loaded, already serving, or refused)."""
        return self._by_name.pop(model_name, None)


class Unauthenticated(RuntimeError):
    """An announcement whose signature does not verify with this replica's key."""


def admitted(settings: Settings, record: ModelPromoted) -> Path:
    """The announced version's verified local directory, fetched from this replica's model store.

    Refused (raises) unless the record is signed with the shared key, names the version's place in
    this replica's own store, and the store's manifest is the announced one, listing the announced
    files and nothing else, every one of them intact.
    """
    if not record.signature or not is_authentic(record, signing_key(settings)):
        raise Unauthenticated(
            f"the announcement of {record.model_name} {record.version} is "
            f"{'signed with another key or altered' if record.signature else 'unsigned'}"
        )
    store = store_for(settings)
    locate(store, record.model_name, record.version, record.uri)
    directory = store.fetch(record.model_name, record.version, record.manifest_sha256)
    if read_manifest(directory).files != record.files:
        raise ChecksumMismatch(f"{record.uri}'s manifest lists other files or checksums than the announcement")
    return directory


def apply(settings: Settings, holder: ModelHolder, record: ModelPromoted) -> Outcome:
    """Admit the announced version, load it and swap it in; on any refusal or failure the served version stays.

    A store that is away is not a refusal: "store_unavailable", to be tried again.
    """
    current = holder.current
    if current is not None and current.version == record.version:
        return Outcome("already_serving", record.version, previous=record.version)
    try:
        served = load_version(
            admitted(settings, record),
            record.manifest_sha256,
            device=devices.of(settings),
            expected_version=record.version,
        )
    except StoreUnavailable as exc:
        return Outcome("store_unavailable", record.version, previous=current.version if current else None, error=exc)
    except Exception as exc:
        return Outcome("failed", record.version, previous=current.version if current else None, error=exc)
    previous = holder.swap(served)
    return Outcome("swapped", record.version, previous=previous)


def serve(settings: Settings, holder: ModelHolder, record: ModelPromoted) -> Outcome:
    """`apply`, and when the version is refused (or the store is unavailable for it) while nothing serves,
    serve the last good version instead: a replica that starts during an outage of the store serves too."""
    outcome = apply(settings, holder, record)
    if outcome.action not in ("failed", "store_unavailable") or holder.current is not None:
        return outcome
    last_good = load_last_good(settings, record.model_name, record.version, devices.of(settings))
    if last_good.served is None:
        log.error("model.no_fallback", model_name=record.model_name, refused=record.version, tried=last_good.tried)
        return outcome
    why = "not fetched, the model store is unavailable" if outcome.action == "store_unavailable" else "refused"
    reason = f"{record.version} {why}: {type(outcome.error).__name__}: {outcome.error}"
    holder.swap(last_good.served, fallback=Fallback(refused_version=record.version, reason=reason))
    log.warning(
        "model.fallback",
        model_name=record.model_name,
        version=last_good.served.version,
        refused=record.version,
        reason=reason,
    )
    return Outcome(
        outcome.action,
        record.version,
        previous=outcome.previous,
        error=outcome.error,
        fallback=last_good.served.version,
    )


def load_failure(settings: Settings, record: ModelPromoted, outcome: Outcome, reason: str) -> ModelLoadFailed:
    return ModelLoadFailed(
        model_name=record.model_name,
        version=record.version,
        replica=replica_id(settings),
        reason=reason[:4000],
        error_type=type(outcome.error).__name__,
        serving_version=outcome.fallback or outcome.previous,
    )


def refusal_reason(record: ModelPromoted, outcome: Outcome) -> str:
    serving = outcome.fallback or outcome.previous or "no version"
    keeps = "serves in its place (fallback)" if outcome.fallback else "keeps serving"
    return f"version {record.version} from {record.uri} not loaded, {serving} {keeps}: {outcome.error}"


class ModelUpdates:
    """A background thread that consumes the model-updates topic until `stop()`.

    One consumer follows every model name of `models` (each target's policy): records
    of other names are skipped, each name's latest announcement goes to its holder.
    """

    def __init__(
        self,
        settings: Settings,
        models: ModelHolders,
        *,
        topic: Topic = topics.MODEL_UPDATES,
        poll_timeout: float = 1.0,
    ) -> None:
        self._settings = settings
        self._holders = models.by_model_name()
        self._topic = topic
        self._poll_timeout = poll_timeout
        self._stop = threading.Event()
        self._pending = PendingRetries()
        self._thread = threading.Thread(target=self._run, name="model-updates", daemon=True)
        self._log = log.bind(group=consumer_group(settings))
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
        self._log.info("model_updates.started", topic=self._topic.name, model_names=sorted(self._holders))
        backoff = Backoff()
        try:
            while not self._stop.is_set():
                try:
                    # consume() waits out its whole timeout unless its batch fills: the first message ends
                    # the wait, and whatever else is already fetched joins it (the latest per name wins).
                    messages = consumer.consume(num_messages=1, timeout=self._poll_timeout)
                    if messages:
                        messages += consumer.consume(num_messages=99, timeout=0)
                    self._handle(messages, producer)
                    backoff.reset()
                except Exception:
                    delay = backoff.next_delay()
                    self._log.exception("model_updates.batch_failed", retry_in_s=round(delay, 2))
                    self._stop.wait(delay)
        finally:
            consumer.close()
            producer.flush(10)
            self._log.info("model_updates.stopped")

    def _handle(self, messages: list[Message], producer: Producer) -> None:
        announcements = [a for msg in messages if (a := self._decode(msg, producer)) is not None]
        now = time.monotonic()
        for model_name, holder in self._holders.items():
            latest, superseded = latest_for(announcements, model_name)
            if latest is not None and (dropped := self._pending.supersede(model_name, latest)) is not None:
                superseded = [dropped, *superseded]  # it waited for the store; the newer one is tried now
            if superseded:
                self._log.info("model_updates.superseded", model_name=model_name, versions=superseded)
            if latest is not None:
                self._apply(latest, holder, producer)
            elif (retry := self._pending.due(model_name, now)) is not None:
                self._apply(retry, holder, producer, retry=True)
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
            if msg.key() is not None and msg.key().decode(errors="replace") in self._holders:
                self._log.info("model_updates.name_retired", model_name=msg.key().decode(), offset=msg.offset())
            return None
        decoded = decode_announcement(msg.value(), self._topic)
        if isinstance(decoded, Refusal):
            bus.send_dead_letter(
                producer,
                STAGE,
                source_topic=msg.topic(),
                value=msg.value(),
                key=msg.key(),
                partition=msg.partition(),
                offset=msg.offset(),
                reason=decoded.reason,
                error_type=decoded.error_type,
            )
            return None
        return Announcement(decoded, msg.partition(), msg.offset(), msg.key(), msg.value())

    def _apply(
        self, announcement: Announcement, holder: ModelHolder, producer: Producer, *, retry: bool = False
    ) -> None:
        record = announcement.record
        self._log.info(
            "model_updates.retrying" if retry else "model_updates.announced",
            model_name=record.model_name,
            version=record.version,
            uri=record.uri,
            offset=announcement.offset,
        )
        outcome = serve(self._settings, holder, record)
        if outcome.action == "store_unavailable":
            self._wait_for_store(announcement, holder, outcome)
            return
        holder.set_pending(None)  # settled: whatever waited for the store is loaded, refused or superseded
        if (settled := self._pending.release(record.model_name)) is not None:
            self._log.info(
                "model_updates.store_available",
                model_name=record.model_name,
                version=record.version,
                waited_s=round(time.time() - settled.since, 1),
                outcome=outcome.action,
            )
        if outcome.action == "swapped":
            self._log.info(
                "model.swapped", model_name=record.model_name, version=outcome.version, previous=outcome.previous
            )
        elif outcome.action == "already_serving":
            self._log.info("model_updates.already_serving", model_name=record.model_name, version=outcome.version)
        else:
            reason = refusal_reason(record, outcome)
            self._log.error(
                "model.load_failed",
                model_name=record.model_name,
                version=record.version,
                serving=outcome.fallback or outcome.previous,
                fallback=outcome.fallback is not None,
                error=str(outcome.error),
                error_type=type(outcome.error).__name__,
            )
            bus.send_dead_letter(
                producer,
                STAGE,
                source_topic=self._topic.name,
                value=announcement.value,
                key=announcement.key,
                partition=announcement.partition,
                offset=announcement.offset,
                reason=reason,
                error_type=type(outcome.error).__name__,
            )
            bus.publish(producer, topics.MODEL_LOAD_FAILURES, load_failure(self._settings, record, outcome, reason))

    def _wait_for_store(self, announcement: Announcement, holder: ModelHolder, outcome: Outcome) -> None:
        """Keep serving what serves, and hold the announcement for a retry: no dead letter, no ModelLoadFailed."""
        record = announcement.record
        held, delay = self._pending.hold(announcement, outcome.error, time.monotonic(), time.time())
        holder.set_pending(
            PendingUpdate(
                version=record.version,
                reason=held.error,
                since=datetime.fromtimestamp(held.since, UTC),
                attempts=held.backoff.attempts,
                next_attempt_at=datetime.fromtimestamp(time.time() + delay, UTC),
            )
        )
        self._log.warning(
            "model_updates.store_unavailable",
            model_name=record.model_name,
            version=record.version,
            serving=outcome.fallback or outcome.previous,
            attempt=held.backoff.attempts,
            retry_in_s=round(delay, 2),
            error=held.error,
        )


def _from_beginning(consumer: Consumer, partitions: list[TopicPartition]) -> None:
    for partition in partitions:
        partition.offset = OFFSET_BEGINNING
    consumer.assign(partitions)
