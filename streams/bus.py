"""Kafka at the edges: producing records, consuming them in batches, dead letters.

Every consumer of ctrlgpt except the faust app runs `consume()`: it decodes each
message against its topic's record type, hands valid records to the stage's
`write(batch)`, and commits only after the batch is written (at-least-once; the
sinks are idempotent). A message that is not a valid record, or that the stage
refuses, goes to the stage's dead-letter topic with the reason and the original
bytes, and the worker goes on. A `ServiceUnavailable` (Elasticsearch or doccano
down, say) is retried with backoff for as long as it lasts: nothing is committed
meanwhile, so nothing is lost.
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
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from ctrlgpt.settings import Settings
from streams import topics
from streams.records import DeadLetter, Record
from streams.topics import ContractError, Topic

__all__ = [
    "ServiceUnavailable",
    "RecordRejected",
    "Received",
    "make_producer",
    "publish",
    "Outgoing",
    "deliver_all",
    "dead_letter",
    "send_dead_letter",
    "ensure_topics",
    "wait_for_broker",
    "consume",
    "Sink",
    "run_sink",
]

log = structlog.get_logger()


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
        "message.max.bytes": 8 * 1024 * 1024,
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
    producer: Producer, messages: Sequence[Outgoing], *, flush_timeout: float = 10.0, max_backoff: float = 30.0
) -> None:
    """Produce `messages` and return once Kafka has acknowledged every one, however long Kafka is away.

    A message still queued is waited for, never produced twice; one whose delivery failed (Kafka away
    past `delivery.timeout.ms`) is gone from the producer, so it is produced again after a back-off.
    For callers that ack their input afterwards and have no crash to fall back on (the faust agents):
    `flush_or_raise` only reports such a failure, and a second flush would find nothing left to wait for.
    """
    pending, delay = list(messages), 0.5
    while True:
        failed: list[Outgoing] = []
        for message in pending:
            _produce(producer, message, functools.partial(_collect_failure, failed, message))
        while (queued := producer.flush(flush_timeout)) > 0:
            log.warning("kafka.delivery_waiting", queued=queued, waited_s=flush_timeout)
        if not failed:
            return
        log.warning("kafka.delivery_retrying", failed=len(failed), retry_in_s=delay)
        time.sleep(delay)
        pending, delay = failed, min(delay * 2, max_backoff)


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


def send_dead_letter(producer: Producer, stage: str, **letter: Any) -> None:
    """Queue a dead letter (`dead_letter`'s arguments); the next `flush_or_raise` reports it if it was lost."""
    message = dead_letter(stage, **letter)
    _produce(producer, message, functools.partial(_remember_failure, id(producer)))


def dead_letter(
    stage: str,
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
    """The stage's dead letter for one input message, with the reason and the original bytes (logged here)."""
    letter = DeadLetter(
        stage=stage,
        source_topic=source_topic,
        partition=partition,
        offset=offset,
        key=key.decode(errors="replace") if key is not None else None,
        reason=reason[:4000],
        error_type=error_type,
        original_base64=base64.b64encode(value or b"").decode(),
        attempts=attempts,
    )
    log.warning("dead_letter", stage=stage, source_topic=source_topic, offset=offset, reason=reason[:300])
    return Outgoing.of(topics.dead_letter_topic(stage), letter)


def wait_for_broker(settings: Settings, timeout: float = 120.0) -> None:
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    deadline = time.monotonic() + timeout
    while True:
        try:
            admin.list_topics(timeout=5)
            return
        except KafkaException as exc:
            if time.monotonic() > deadline:
                raise ServiceUnavailable(f"Kafka at {settings.kafka_bootstrap} not reachable: {exc}") from exc
            log.info("kafka.waiting", bootstrap=settings.kafka_bootstrap)
            time.sleep(2)


def ensure_topics(settings: Settings, wanted: Sequence[Topic] = topics.ALL) -> list[str]:
    """Create the registry's topics that do not exist yet; returns the names created."""
    wait_for_broker(settings)
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    existing = set(admin.list_topics(timeout=10).topics)
    new = [
        NewTopic(
            t.name,
            num_partitions=t.partitions or settings.topic_partitions,
            replication_factor=settings.topic_replication,
            config=t.config(),
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
    return created


def make_consumer(settings: Settings, group: str, **overrides: object) -> Consumer:
    config = {
        "bootstrap.servers": settings.kafka_bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "max.poll.interval.ms": 900_000,
    }
    config.update(overrides)
    return Consumer(config)


def consume(
    settings: Settings,
    *,
    group: str,
    topic: Topic,
    stage: str,
    write: Callable[[list[Received]], None],
    stop: threading.Event,
    batch_size: int = 100,
    poll_timeout: float = 1.0,
    max_backoff: float = 30.0,
) -> None:
    """Run one stage until `stop` is set: decode, write in batches, dead-letter, commit."""
    consumer = make_consumer(settings, group)
    producer = make_producer(settings)
    consumer.subscribe([topic.name])
    bound = log.bind(stage=stage, group=group, topic=topic.name)
    bound.info("consumer.started")
    try:
        while not stop.is_set():
            messages = consumer.consume(num_messages=batch_size, timeout=poll_timeout)
            if not messages:
                continue
            batch: list[Received] = []
            for msg in messages:
                if msg.error():
                    if msg.error().code() != KafkaError._PARTITION_EOF:
                        bound.warning("consumer.error", error=str(msg.error()))
                    continue
                try:
                    record = topic.decode(msg.value())
                except ContractError as exc:
                    send_dead_letter(
                        producer, stage, source_topic=msg.topic(), value=msg.value(), key=msg.key(),
                        partition=msg.partition(), offset=msg.offset(), reason=str(exc), error_type="ContractError",
                    )
                    continue
                batch.append(Received(record, msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.value()))
            if batch:
                _write_with_retries(batch, write, producer, stage, stop, max_backoff, bound)
            flush_or_raise(producer)
            _commit(consumer)
    finally:
        consumer.close()
        producer.flush(10)
        bound.info("consumer.stopped")


def _commit(consumer: Consumer) -> None:
    try:
        consumer.commit(asynchronous=False)
    except KafkaException as exc:
        if exc.args[0].code() != KafkaError._NO_OFFSET:
            raise


def _write_with_retries(
    batch: list[Received],
    write: Callable[[list[Received]], None],
    producer: Producer,
    stage: str,
    stop: threading.Event,
    max_backoff: float,
    bound: structlog.stdlib.BoundLogger,
) -> None:
    """Write a batch; on a failure that is not the service's, find the poison record(s)."""
    delay, attempts = 0.5, 0
    while True:
        try:
            write(batch)
            return
        except ServiceUnavailable as exc:
            if stop.is_set():
                raise  # leave the batch uncommitted for the next start
            bound.warning("stage.waiting_for_service", error=str(exc), retry_in_s=delay)
            stop.wait(delay)
            delay = min(delay * 2, max_backoff)
        except Exception as exc:  # noqa: BLE001 - any other failure is about the records
            attempts += 1
            if len(batch) > 1:
                for one in batch:
                    _write_with_retries([one], write, producer, stage, stop, max_backoff, bound)
                return
            if attempts < 2 and not isinstance(exc, RecordRejected):
                continue
            one = batch[0]
            send_dead_letter(
                producer, stage, source_topic=one.topic, value=one.value, key=one.key, partition=one.partition,
                offset=one.offset, reason=str(exc) or repr(exc), error_type=type(exc).__name__, attempts=attempts,
            )
            return


class Sink(Protocol):
    """What `run_sink` drives: connect in `setup()`, write batches, let go in `close()`."""

    def setup(self) -> None: ...

    def write(self, batch: list[Received]) -> None: ...

    def close(self) -> None: ...


def run_sink(settings: Settings, sink: Sink, *, group: str, topic: Topic, stage: str, stop: threading.Event) -> None:
    """Set the sink up (waiting out its service), then `consume` into it until `stop`."""
    delay = 1.0
    try:
        while not stop.is_set():
            try:
                sink.setup()
                break
            except ServiceUnavailable as exc:
                log.warning("sink.waiting_for_service", stage=stage, error=str(exc), retry_in_s=delay)
                stop.wait(delay)
                delay = min(delay * 2, 30.0)
        consume(settings, group=group, topic=topic, stage=stage, write=sink.write, stop=stop)
    finally:
        sink.close()
