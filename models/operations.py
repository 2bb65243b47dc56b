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

from confluent_kafka import Producer

from ctrlgpt.settings import Settings
from models.announcements import published
from models.registry import Change, Registry, model_registry
from streams import topics
from streams.commands import publish_now
from streams.records import ModelPromoted
from streams.topics import Topic

__all__ = ["UnknownTarget", "announcement", "pin", "registry_for", "rollback"]


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
