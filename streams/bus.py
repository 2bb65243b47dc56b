"""Kafka at the edges: producing records, consuming them in batches, dead letters.

Every consumer of ctrlgpt except the faust app runs `consume()`: it decodes each
message against its topic's record type, hands valid records to the stage's
`write(batch)`, and commits only after the batch is written (at-least-once; the
sinks are idempotent). A message that is not a valid record, or that the stage
refuses, goes to the stage's dead-letter topic with the reason and the original
bytes (a bounded excerpt of them when the letter would be too large for Kafka),
and the worker goes on.

An outage is a pause, never a crash. A `ServiceUnavailable` (Elasticsearch or doccano
down, say) pauses the assigned partitions and the stage keeps the batch it could not
write, keeps polling (so it stays in its group however long the outage lasts), and
writes the batch again on `ctrlgpt.retry`'s schedule; then it resumes where it stopped.
Kafka away is a pause too: a commit that fails (the broker gone, the group rebalancing,
the membership lost) is logged and tried again later, the consumer rejoins, and what
was not committed is read again (the sinks are idempotent); dead letters wait for
Kafka to take them.
"""

from __future__ import annotations

import base64
import functools
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from ctrlgpt import worker_metrics
from ctrlgpt.retry import Backoff, retrying
from ctrlgpt.settings import Settings
from streams import topics
from streams.read_ahead import ReadAhead
from streams.records import DeadLetter, Record, Stage
from streams.topics import ContractError, Topic

__all__ = [
    "Outgoing",
    "Received",
    "RecordRejected",
    "ServiceUnavailable",
    "Sink",
    "consume",
    "dead_letter",
    "deliver_all",
    "ensure_topics",
    "make_producer",
    "publish",
    "run_sink",
    "send_dead_letter",
    "wait_for_broker",
]

log = structlog.get_logger()

# The producers' message.max.bytes, the broker's too (deploy/kafka/broker.py): raw pages can be large.
MESSAGE_MAX_BYTES = 8 * 1024 * 1024
# Room a letter leaves under MESSAGE_MAX_BYTES for Kafka's own framing (headers, key, record overhead).
ENVELOPE_BYTES = 64 * 1024
# What a dead letter keeps of an original too large to carry whole: enough to see what it was.
DEAD_LETTER_EXCERPT_BYTES = 64 * 1024


class ServiceUnavailable(RuntimeError):
    """A dependency is down or overloaded: retry the same batch later, commit nothing."""


class RecordRejected(ValueError):
    """This one record cannot be processed, now or later: dead-letter it."""


@dataclass(frozen=True)
class Received:
    """A decoded record with where it came from (for dead letters and idempotency keys)."""

    record: Record
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


def make_producer(settings: Settings, **overrides: object) -> Producer:
    config = {
        "bootstrap.servers": settings.kafka_bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "compression.type": "zstd",
        "linger.ms": 20,
        "message.max.bytes": MESSAGE_MAX_BYTES,
        "delivery.timeout.ms": 120_000,
    }
    config.update(overrides)
    return Producer(config)


@dataclass(frozen=True)
class Outgoing:
    """A record encoded for its topic, ready to produce (and to produce again if its delivery fails)."""

    topic: str
    key: bytes | None
    value: bytes

    @classmethod
    def of(cls, topic: Topic, record: Record) -> Outgoing:
        return cls(topic.name, topic.key_of(record), topic.encode(record))


def publish(producer: Producer, topic: Topic, record: Record) -> None:
    """Queue one record; `flush_or_raise(producer)` waits for delivery and reports failures."""
    _produce(producer, Outgoing.of(topic, record), functools.partial(_remember_failure, id(producer)))


def _produce(producer: Producer, message: Outgoing, on_delivery: Callable[[KafkaError | None, Message], None]) -> None:
    while True:
        try:
            producer.produce(message.topic, key=message.key, value=message.value, on_delivery=on_delivery)
            producer.poll(0)
            return
        except BufferError:
            producer.poll(0.5)


def deliver_all(
    producer: Producer,
    messages: Sequence[Outgoing],
    *,
    flush_timeout: float = 10.0,
    max_backoff: float = 30.0,
    stop: threading.Event | None = None,
) -> None:
    """Produce `messages` and return once Kafka has acknowledged every one, however long Kafka is away.

    A message still queued is waited for, never produced twice; one whose delivery failed (Kafka away
    past `delivery.timeout.ms`) is gone from the producer, so it is produced again after a back-off.
    For callers that ack their input afterwards and have no crash to fall back on (the faust agents):
    `flush_or_raise` only reports such a failure, and a second flush would find nothing left to wait for.
    With `stop`: once it is set, raises `ServiceUnavailable` instead of waiting on (the caller commits nothing).
    """
    pending, backoff = list(messages), Backoff(max_delay_s=max_backoff)
    while True:
        failed: list[Outgoing] = []
        for message in pending:
            _produce(producer, message, functools.partial(_collect_failure, failed, message))
        while (queued := producer.flush(flush_timeout)) > 0:
            _raise_if_stopping(stop, queued)
            log.warning("kafka.delivery_waiting", queued=queued, waited_s=flush_timeout)
        if not failed:
            return
        delay = backoff.next_delay()
        log.warning("kafka.delivery_retrying", failed=len(failed), retry_in_s=round(delay, 2))
        if stop is not None and stop.wait(delay):
            _raise_if_stopping(stop, len(failed))
        elif stop is None:
            time.sleep(delay)
        pending = failed


def _raise_if_stopping(stop: threading.Event | None, undelivered: int) -> None:
    if stop is not None and stop.is_set():
        raise ServiceUnavailable(f"stopping with {undelivered} messages not yet delivered to Kafka")


def _collect_failure(failed: list[Outgoing], message: Outgoing, err: KafkaError | None, msg: Message) -> None:
    if err is not None:
        log.error("kafka.delivery_failed", topic=msg.topic(), error=str(err))
        failed.append(message)


# Delivery failures per producer, reported by the next flush_or_raise: a cursor or a
# commit must never move past a record that was not delivered.
_failed_deliveries: dict[int, list[str]] = {}


def _remember_failure(producer_id: int, err: KafkaError | None, msg: Message) -> None:
    if err is not None:
        log.error("kafka.delivery_failed", topic=msg.topic(), error=str(err))
        _failed_deliveries.setdefault(producer_id, []).append(f"{msg.topic()}: {err}")


def flush_or_raise(producer: Producer, timeout: float = 60.0) -> None:
    remaining = producer.flush(timeout)
    failed = _failed_deliveries.pop(id(producer), [])
    if remaining:
        raise ServiceUnavailable(f"{remaining} messages not delivered to Kafka within {timeout}s")
    if failed:
        raise ServiceUnavailable(f"{len(failed)} messages failed delivery, first: {failed[0]}")


def send_dead_letter(producer: Producer, stage: Stage, **letter: Any) -> None:
    """Queue a dead letter (`dead_letter`'s arguments); the next `flush_or_raise` reports it if it was lost."""
    message = dead_letter(stage, **letter)
    _produce(producer, message, functools.partial(_remember_failure, id(producer)))


def dead_letter(
    stage: Stage,
    *,
    source_topic: str,
    value: bytes | None,
    reason: str,
    error_type: str,
    key: bytes | None = None,
    partition: int | None = None,
    offset: int | None = None,
    attempts: int = 1,
) -> Outgoing:
    """The stage's dead letter for one input message, with the reason and the original bytes (logged here).

    An original too large to travel whole in a letter (base64 grows it by a third: a 7 MB page
    would exceed the producer's limit) is cut to its first `DEAD_LETTER_EXCERPT_BYTES`, marked
    `truncated` with its size; its source topic, partition and offset say where the whole is.
    """
    topic = topics.dead_letter_topic(stage)  # an unknown stage is refused before any letter is built
    original = value or b""
    letter = DeadLetter(
        stage=stage,
        source_topic=source_topic,
        partition=partition,
        offset=offset,
        key=_excerpt(key).decode(errors="replace") if key is not None else None,
        reason=reason[:4000],
        error_type=error_type,
        original_base64=base64.b64encode(original).decode(),
        attempts=attempts,
    )
    message = Outgoing.of(topic, letter)
    if len(message.value) + len(message.key or b"") > MESSAGE_MAX_BYTES - ENVELOPE_BYTES:
        letter = letter.model_copy(
            update={
                "original_base64": base64.b64encode(_excerpt(original)).decode(),
                "truncated": True,
                "original_size": len(original),
            }
        )
        message = Outgoing.of(topic, letter)
    worker_metrics.DEAD_LETTERS.labels(stage).inc()
    log.warning(
        "dead_letter",
        stage=stage,
        source_topic=source_topic,
        partition=partition,
        offset=offset,
        reason=reason[:300],
        truncated=letter.truncated,
        bytes=len(original),
    )
    return message


def _excerpt(value: bytes) -> bytes:
    return value[:DEAD_LETTER_EXCERPT_BYTES]


def wait_for_broker(settings: Settings, timeout: float = 120.0) -> None:
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    try:
        retrying(KafkaException, what=f"Kafka at {settings.kafka_bootstrap}", give_up_after_s=timeout)(
            admin.list_topics, timeout=5
        )
    except KafkaException as exc:
        raise ServiceUnavailable(f"Kafka at {settings.kafka_bootstrap} not reachable: {exc}") from exc


def replication_config(settings: Settings) -> dict[str, str]:
    """Topic config for the writes of acks=all producers: acknowledged once on this many replicas."""
    return {"min.insync.replicas": str(settings.min_insync_replicas)}


def ensure_topics(settings: Settings, wanted: Sequence[Topic] = topics.ALL) -> list[str]:
    """Create the registry's topics that do not exist yet; returns the names created."""
    wait_for_broker(settings)
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    existing = set(admin.list_topics(timeout=10).topics)
    new = [
        NewTopic(
            t.name,
            num_partitions=t.partitions or settings.topic_partitions,
            replication_factor=settings.replication_factor,
            config={**t.config(), **replication_config(settings)},
        )
        for t in wanted
        if t.name not in existing
    ]
    created = []
    for name, future in (admin.create_topics(new) if new else {}).items():
        try:
            future.result()
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    wait_until_known(settings, [t.name for t in wanted])
    return created


def wait_until_known(settings: Settings, names: Sequence[str], timeout: float = 60.0) -> None:
    """Wait until every broker knows the topics and their leaders.

    Brokers learn of a new topic from the controller a moment apart: in a cluster, a client asking
    another broker right after the creation (faust for its changelog, a test for its leaders) would not find it.
    """
    wanted = set(names)
    deadline = time.monotonic() + timeout
    while True:
        brokers = AdminClient({"bootstrap.servers": settings.kafka_bootstrap}).list_topics(timeout=10).brokers
        missing = {}
        for broker in brokers.values():
            metadata = AdminClient({"bootstrap.servers": f"{broker.host}:{broker.port}"}).list_topics(timeout=10)
            unknown = [
                name
                for name in wanted
                if name not in metadata.topics
                or metadata.topics[name].error is not None
                or any(p.leader < 0 for p in metadata.topics[name].partitions.values())
            ]
            if unknown:
                missing[broker.id] = unknown
        if not missing:
            return
        if time.monotonic() > deadline:
            raise ServiceUnavailable(f"topics not known to every broker within {timeout:.0f}s: {missing}")
        time.sleep(0.2)


def make_consumer(settings: Settings, group: str, **overrides: object) -> Consumer:
    config = {
        "bootstrap.servers": settings.kafka_bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "max.poll.interval.ms": settings.kafka_max_poll_interval_ms,
        "session.timeout.ms": settings.kafka_session_timeout_ms,
    }
    config.update(overrides)
    return Consumer(config)


def consume(
    settings: Settings,
    *,
    group: str,
    topic: Topic,
    stage: Stage,
    write: Callable[[list[Received]], None],
    stop: threading.Event,
    batch_size: int = 100,
    poll_timeout: float = 1.0,
    max_backoff: float = 30.0,
) -> None:
    """Run one stage until `stop` is set: decode, write in batches, dead-letter, commit; pause through outages."""
    producer = make_producer(settings)
    bound = log.bind(stage=stage, group=group, topic=topic.name)
    stage_loop = _StageLoop(
        settings,
        group,
        producer,
        topic,
        stage,
        write,
        stop,
        batch_size,
        poll_timeout,
        Backoff(max_delay_s=max_backoff),
        bound,
    )
    bound.info("consumer.started")
    try:
        stage_loop.run()
    finally:
        stage_loop.close()
        producer.flush(10)
        bound.info("consumer.stopped")


# An idle stage whose last commit has not been answered yet asks again after this long.
COMMIT_AGAIN_S = 5.0


class _StageLoop:
    """The loop of `consume`: poll, hold what could not be written (partitions paused), write it again when due."""

    def __init__(
        self,
        settings: Settings,
        group: str,
        producer: Producer,
        topic: Topic,
        stage: Stage,
        write: Callable[[list[Received]], None],
        stop: threading.Event,
        batch_size: int,
        poll_timeout: float,
        backoff: Backoff,
        bound: structlog.stdlib.BoundLogger,
    ) -> None:
        # Commits are asynchronous, answered in `_on_commit` from within `consume`: the loop never blocks on a
        # broker that is away, so it keeps polling, and stops when asked.
        self._consumer = make_consumer(settings, group, on_commit=self._on_commit)
        self._producer = producer
        self._topic = topic
        self._stage = stage
        self._write = write
        self._stop = stop
        self._batch_size = batch_size
        self._poll_timeout = poll_timeout
        self._backoff = backoff
        self._log = bound
        self._read: ReadAhead[Received] = ReadAhead()
        self._letters: list[Outgoing] = []
        self._paused = False
        # While the service is away (partitions paused): the held records are not written again before this.
        self._not_before: float | None = None
        # After a failed commit (Kafka away, the group rebalancing): the next try on the same schedule.
        self._commit_backoff = Backoff(max_delay_s=backoff.max_delay_s)
        self._commit_not_before: float | None = None

    def run(self) -> None:
        self._consumer.subscribe(
            [self._topic.name], on_assign=self.on_assign, on_revoke=self.on_revoke, on_lost=self.on_revoke
        )
        while not self._stop.is_set():
            self._take(self._consumer.consume(num_messages=self._batch_size, timeout=self._poll_wait()))
            if self._read.unwritten or self._letters:
                if _is_due(self._not_before):
                    self._write_held()
            elif _is_due(self._commit_not_before) and self._read.to_commit():
                self._commit()

    def close(self) -> None:
        """Commit what was written, unless the last commit failed (a broker that is away would hold the stop up:
        what is not committed is read again) or a dead letter is still to be sent, then leave the group."""
        if not self._letters and self._commit_backoff.attempts == 0 and (offsets := self._read.to_commit()):
            try:
                self._consumer.commit(offsets=_topic_partitions(offsets), asynchronous=False)
            except KafkaException as exc:
                self._log.warning("consumer.commit_failed", error=str(exc.args[0]), code=exc.args[0].name())
        self._consumer.close()

    def _poll_wait(self) -> float:
        if self._not_before is None:
            return self._poll_timeout
        return max(0.0, min(self._poll_timeout, self._not_before - time.monotonic()))

    def _take(self, messages: list[Message]) -> None:
        for msg in messages:
            if msg.error():
                if msg.error().code() != KafkaError._PARTITION_EOF:
                    self._log.warning("consumer.error", error=str(msg.error()))
                continue
            self._read.read(msg.topic(), msg.partition(), msg.offset())
            try:
                record = self._topic.decode(msg.value())
            except ContractError as exc:
                worker_metrics.RECORDS.labels(self._stage).inc()
                self._letters.append(
                    dead_letter(
                        self._stage,
                        source_topic=msg.topic(),
                        value=msg.value(),
                        key=msg.key(),
                        partition=msg.partition(),
                        offset=msg.offset(),
                        reason=str(exc),
                        error_type="ContractError",
                    )
                )
                continue
            self._read.hold(Received(record, msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.value()))

    def _write_held(self) -> None:
        held = self._read.unwritten
        left = self._write_sorting(held) if held else []
        worker_metrics.RECORDS.labels(self._stage).inc(len(held) - len(left))
        self._read.still_unwritten(left)
        try:
            deliver_all(self._producer, self._letters, stop=self._stop)
        except ServiceUnavailable:
            return  # stopping: nothing past the undelivered letters is committed
        self._letters = []
        self._commit()
        if left:
            self._pause(len(left))
        else:
            self._resume()
            self._backoff.reset()
            self._not_before = None

    def _write_sorting(self, batch: list[Received]) -> list[Received]:
        """Write `batch`; returns what is left when the service went away. A failure that is not the service's is
        narrowed down record by record, and the record that fails twice (once if rejected) is dead-lettered."""
        try:
            self._write(batch)
            return []
        except ServiceUnavailable as exc:
            worker_metrics.ERRORS.labels(self._stage, type(exc).__name__).inc()
            self._log.warning("stage.waiting_for_service", error=str(exc), held=len(batch))
            return batch
        except Exception as exc:
            worker_metrics.ERRORS.labels(self._stage, type(exc).__name__).inc()
            if len(batch) > 1:
                for index, one in enumerate(batch):
                    if left := self._write_sorting([one]):
                        return left + batch[index + 1 :]
                return []
            return self._write_one_again(batch[0], exc)

    def _write_one_again(self, one: Received, first: Exception) -> list[Received]:
        error, attempts = first, 1
        if not isinstance(first, RecordRejected):
            attempts = 2
            try:
                self._write([one])
                return []
            except ServiceUnavailable as exc:
                worker_metrics.ERRORS.labels(self._stage, type(exc).__name__).inc()
                self._log.warning("stage.waiting_for_service", error=str(exc), held=1)
                return [one]
            except Exception as exc:
                worker_metrics.ERRORS.labels(self._stage, type(exc).__name__).inc()
                error = exc
        self._letters.append(
            dead_letter(
                self._stage,
                source_topic=one.topic,
                value=one.value,
                key=one.key,
                partition=one.partition,
                offset=one.offset,
                reason=str(error) or repr(error),
                error_type=type(error).__name__,
                attempts=attempts,
            )
        )
        return []

    def _commit(self) -> None:
        """Ask Kafka to commit how far the stage got; `_on_commit` hears the answer."""
        offsets = self._read.to_commit()
        if not offsets:
            return
        self._commit_not_before = time.monotonic() + COMMIT_AGAIN_S
        try:
            self._consumer.commit(offsets=_topic_partitions(offsets), asynchronous=True)
        except KafkaException as exc:
            self._commit_failed(exc.args[0])

    def _on_commit(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        error = error or next((p.error for p in partitions if p.error), None)
        if error is not None:
            self._commit_failed(error)
            return
        self._read.committed({(p.topic, p.partition): p.offset for p in partitions})
        self._commit_backoff.reset()
        self._commit_not_before = None

    def _commit_failed(self, error: KafkaError) -> None:
        """A failure (Kafka away, a rebalance, a lost membership: UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION,
        _ASSIGNMENT_LOST, timeouts) is tried again later; whatever a new owner of the partition reads again is
        written again, idempotently. Only librdkafka's fatal errors stop the stage."""
        if error.fatal():
            raise KafkaException(error)
        delay = self._commit_backoff.next_delay()
        self._commit_not_before = time.monotonic() + delay
        self._log.warning("consumer.commit_failed", error=str(error), code=error.name(), retry_in_s=round(delay, 2))

    def _pause(self, held: int) -> None:
        if not self._paused:
            self._consumer.pause(self._consumer.assignment())
            self._paused = True
        delay = self._backoff.next_delay()
        self._not_before = time.monotonic() + delay
        self._log.warning("stage.paused", held=held, retry_in_s=round(delay, 2), attempt=self._backoff.attempts)

    def _resume(self) -> None:
        if self._paused:
            self._consumer.resume(self._consumer.assignment())
            self._paused = False
            self._log.info("stage.resumed", after_attempts=self._backoff.attempts)

    def on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._log.info("consumer.assigned", partitions=[p.partition for p in partitions])

    def on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Also on a lost assignment. The group's eager protocol revokes every partition, so nothing stays held:
        the partitions assigned next start unpaused, from their committed offsets."""
        dropped = self._read.forget((p.topic, p.partition) for p in partitions)
        self._log.info("consumer.revoked", partitions=[p.partition for p in partitions], held_dropped=dropped)
        if self._paused and not self._read.unwritten:
            try:
                consumer.resume(partitions)
            except KafkaException as exc:
                self._log.info("consumer.resume_on_revoke_failed", error=str(exc))
            self._paused = False
            self._not_before = None


def _topic_partitions(offsets: dict[tuple[str, int], int]) -> list[TopicPartition]:
    return [TopicPartition(topic, partition, offset) for (topic, partition), offset in offsets.items()]


def _is_due(not_before: float | None) -> bool:
    return not_before is None or time.monotonic() >= not_before


class Sink(Protocol):
    """What `run_sink` drives: connect in `setup()`, write batches, let go in `close()`."""

    def setup(self) -> None: ...

    def write(self, batch: list[Received]) -> None: ...

    def close(self) -> None: ...


def run_sink(settings: Settings, sink: Sink, *, group: str, topic: Topic, stage: Stage, stop: threading.Event) -> None:
    """Set the sink up (waiting out its service), then `consume` into it until `stop`."""
    try:
        try:
            retrying(ServiceUnavailable, what=f"{stage} sink setup", stop=stop)(sink.setup)
        except ServiceUnavailable:
            if stop.is_set():
                return
            raise
        consume(settings, group=group, topic=topic, stage=stage, write=sink.write, stop=stop)
    finally:
        sink.close()
