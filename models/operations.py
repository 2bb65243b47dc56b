"""Operator actions on model versions, one function each, shared by `ctrlgpt models` and the admin API.

Each target's policy has its own registry (`settings.policy_for(target)`); an operation names the
target, `settings.target_sentiment` by default. Disk changes go through `models.registry`
(locked, checksummed); the chosen version is then published to the model store (`models.store`:
its manifest changed) and announced on Kafka: a rollback or pin as a signed `ModelPromoted` on
the compacted model-updates topic (so each API replica fetches and swaps).
Retrying an operation after a failed publish is safe: rolling back or pinning to the version
already current announces it again. (Training commands, train now and cancel: `streams.commands`.)
"""

from __future__ import annotations

import threading

import structlog
from confluent_kafka import Producer

from ctrlgpt.settings import Settings
from models.announcements import published, signing_key, unannounced
from models.registry import Change, Registry, model_registry
from streams import topics
from streams.commands import publish_now
from streams.records import ModelPromoted
from streams.snapshot import read_snapshot_when_kafka_is_back
from streams.topics import Topic

__all__ = ["UnknownTarget", "announcement", "pin", "reannounce_current", "registry_for", "rollback"]

log = structlog.get_logger()

REANNOUNCED = "announced again: the model-updates topic held no authentic announcement of the current version"


class UnknownTarget(ValueError):
    """A target the trainer keeps no policy for."""


def registry_for(settings: Settings, target: str | None = None) -> Registry:
    """The registry of a target's policy (default: `target_sentiment`), as the trainer promotes into it."""
    target = target or settings.target_sentiment
    if target not in settings.target_list:
        raise UnknownTarget(f"no policy is trained for target {target!r}; targets: {', '.join(settings.target_list)}")
    return model_registry(settings.registry_dir, settings.policy_for(target))


def announcement(settings: Settings, change: Change) -> ModelPromoted:
    """Publish the version an operator chose to the model store; the model update that makes every replica serve it."""
    return published(settings, change.path, action=change.action, reason=change.reason)


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
    publish_now(settings, producer, topic, announcement(settings, change))
    return change


def reannounce_current(
    settings: Settings,
    *,
    producer: Producer | None = None,
    topic: Topic = topics.MODEL_UPDATES,
    stop: threading.Event | None = None,
) -> list[ModelPromoted]:
    """Announce again each target's current version that `topic` does not announce authentically.

    The registry picks what is served; the topic only tells the replicas. They drift apart when
    model updates from before signed schema-2 records sit on the compacted topic (a replica
    dead-letters them), when an announcement was forged or lost, or when the topic was recreated.
    Announcing the current version once more is always safe: a replica already serving it keeps it.
    """
    registries = {settings.policy_for(target): registry_for(settings, target) for target in settings.target_list}
    current = {name: version for name, registry in registries.items() if (version := registry.current()) is not None}
    if not current:
        return []
    records = read_snapshot_when_kafka_is_back(settings, topic, stop).records
    announced = [record for record in records if isinstance(record, ModelPromoted)]
    updates = []
    for name in unannounced(current, announced, signing_key(settings)):
        registry, version = registries[name], current[name]
        action = "pinned" if registry.pinned() == version else "promoted"
        update = published(settings, registry.path(version), action=action, reason=REANNOUNCED)
        publish_now(settings, producer, topic, update)
        log.info("models.reannounced", model_name=name, version=version, action=action, uri=update.uri)
        updates.append(update)
    return updates
