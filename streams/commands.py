"""An operator's command, published at once: one record, flushed, or `bus.ServiceUnavailable`.

Shared by `ctrlgpt training` (trainer/training_cli.py) and the API's admin routes, which may not
import `trainer/`: training commands here; model rollbacks and pins in `models.operations`.
"""

from __future__ import annotations

from confluent_kafka import Producer

from ctrlgpt.settings import Settings
from streams import bus, topics
from streams.records import Record, TrainingRequested
from streams.topics import Topic

__all__ = ["PUBLISH_TIMEOUT_S", "publish_now", "request_training"]

PUBLISH_TIMEOUT_S = 15.0


def publish_now(settings: Settings, producer: Producer | None, topic: Topic, record: Record) -> None:
    """Publish and wait until Kafka has it (a producer of its own when none is given)."""
    producer = producer or bus.make_producer(settings)
    bus.publish(producer, topic, record)
    bus.flush_or_raise(producer, PUBLISH_TIMEOUT_S)


def request_training(
    settings: Settings,
    command: str,
    *,
    run_id: str | None = None,
    requested_by: str = "operator",
    reason: str = "",
    producer: Producer | None = None,
    topic: Topic = topics.TRAINING_COMMANDS,
) -> TrainingRequested:
    """Ask the trainer to start a run now (command "train") or to cancel the running one ("cancel")."""
    request = TrainingRequested(command=command, run_id=run_id, requested_by=requested_by, reason=reason)
    publish_now(settings, producer, topic, request)
    return request
