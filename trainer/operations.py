"""Operator actions on models and training, one function each, shared by `ctrlgpt models|training` and the admin API.

Each target's policy has its own registry (`settings.policy_for(target)`); an operation names the
target, `settings.target_sentiment` by default. Disk changes go through `trainer.registry`
(locked, checksummed); what every replica or the
trainer must learn is then published on Kafka: a rollback or pin as a `ModelPromoted` on the
compacted model-updates topic (so each API replica swaps), a train/cancel as a
`TrainingRequested`. Retrying an operation after a failed publish is safe: rolling back or
pinning to the version already current announces it again.
"""

from __future__ import annotations

from confluent_kafka import Producer

from ctrlgpt.settings import Settings
from streams import bus, topics
from streams.records import ModelPromoted, TrainingRequested
from streams.topics import Topic
from trainer.registry import Change, Registry, model_registry

__all__ = ["PUBLISH_TIMEOUT_S", "UnknownTarget", "registry_for", "announcement", "rollback", "pin", "request_training"]

PUBLISH_TIMEOUT_S = 15.0


class UnknownTarget(ValueError):
    """A target the trainer keeps no policy for."""


def registry_for(settings: Settings, target: str | None = None) -> Registry:
    """The registry of a target's policy (default: `target_sentiment`), as the trainer promotes into it."""
    target = target or settings.target_sentiment
    if target not in settings.target_list:
        raise UnknownTarget(f"no policy is trained for target {target!r}; targets: {', '.join(settings.target_list)}")
    return model_registry(settings.registry_dir, settings.policy_for(target))


def announcement(change: Change) -> ModelPromoted:
    """The model update that makes every replica serve the version an operator chose."""
    return ModelPromoted(
        model_name=change.manifest.name,
        version=change.version,
        path=str(change.path),
        manifest_sha256=change.manifest_sha256,
        parent_version=change.manifest.parent_version,
        metrics=change.manifest.metrics,
        action=change.action,
        reason=change.reason,
    )


def rollback(
    settings: Settings,
    version: str,
    reason: str,
    *,
    target: str | None = None,
    producer: Producer | None = None,
    topic: Topic = topics.MODEL_UPDATES,
) -> Change:
    """Make an earlier promoted version current again and announce it (action rolled_back)."""
    return _announced(settings, registry_for(settings, target).rollback(version, reason), producer, topic)


def pin(
    settings: Settings,
    version: str,
    reason: str,
    *,
    target: str | None = None,
    producer: Producer | None = None,
    topic: Topic = topics.MODEL_UPDATES,
) -> Change:
    """Make a version current and keep it so (the gate promotes nothing until unpinned); announce it (action pinned)."""
    return _announced(settings, registry_for(settings, target).pin(version, reason), producer, topic)


def _announced(settings: Settings, change: Change, producer: Producer | None, topic: Topic) -> Change:
    _publish(settings, producer, topic, announcement(change))
    return change


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
    _publish(settings, producer, topic, request)
    return request


def _publish(settings: Settings, producer: Producer | None, topic: Topic, record: ModelPromoted | TrainingRequested) -> None:
    producer = producer or bus.make_producer(settings)
    bus.publish(producer, topic, record)
    bus.flush_or_raise(producer, PUBLISH_TIMEOUT_S)
