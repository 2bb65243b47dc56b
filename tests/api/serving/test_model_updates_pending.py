"""An announcement whose version the model store cannot give now waits, is retried, and is superseded by a newer one."""

from __future__ import annotations

import shutil
import socket
import time

import pytest
from announced import announced
from confluent_kafka import Message, Producer

from api.serving.model_updates import Announcement, ModelUpdates, PendingRetries, apply, serve
from api.serving.served_model import ModelHolder, ModelHolders
from ctrlgpt.retry import FIRST_DELAY_S, MAX_DELAY_S
from ctrlgpt.settings import Settings
from models import manifest
from models.registry import model_registry, version_id
from models.store import StoreUnavailable
from streams import topics
from streams.records import ModelPromoted


def _announcement(settings, fixture, offset: int) -> Announcement:
    record: ModelPromoted = announced(settings, fixture.path, model_name="expansion-policy")
    return Announcement(record, 0, offset, topics.MODEL_UPDATES.key_of(record), topics.MODEL_UPDATES.encode(record))


@pytest.fixture
def v1_announced(api_settings, v1) -> Announcement:
    return _announcement(api_settings, v1, 0)


@pytest.fixture
def v2_announced(api_settings, v2) -> Announcement:
    return _announcement(api_settings, v2, 1)


OUTAGE = StoreUnavailable("fetching s3://models/expansion-policy/v1: unavailable (EndpointConnectionError)")


def test_a_held_announcement_is_due_after_a_back_off_that_grows_while_the_same_version_stays_away(v1_announced):
    pending = PendingRetries()
    assert pending.due("expansion-policy", now=0.0) is None
    held, first = pending.hold(v1_announced, OUTAGE, now=100.0, wall=1_000.0)
    assert (held.version, held.since, held.backoff.attempts) == ("v1", 1_000.0, 1)
    assert "EndpointConnectionError" in held.error
    assert 0 < first <= 2 * FIRST_DELAY_S
    assert pending.due("expansion-policy", now=100.0 + first - 0.01) is None
    assert pending.due("expansion-policy", now=100.0 + first) is v1_announced
    assert pending.due("other-policy", now=10_000.0) is None  # kept per model name

    delays = [pending.hold(v1_announced, OUTAGE, now=200.0, wall=2_000.0)[1] for _ in range(12)]
    assert pending.get("expansion-policy").since == 1_000.0  # waiting since the first failure
    assert pending.get("expansion-policy").backoff.attempts == 13
    assert delays[-1] > first and max(delays) <= MAX_DELAY_S + FIRST_DELAY_S  # grows, capped (plus jitter)


def test_a_newer_announcement_supersedes_the_held_one_and_another_version_starts_its_back_off_again(
    v1_announced, v2_announced
):
    pending = PendingRetries()
    for _ in range(5):
        pending.hold(v1_announced, OUTAGE, now=0.0, wall=0.0)
    assert pending.supersede("expansion-policy", v1_announced) is None  # the same version again: still held
    assert pending.get("expansion-policy").backoff.attempts == 5
    assert pending.supersede("expansion-policy", v2_announced) == "v1"
    assert pending.get("expansion-policy") is None
    assert pending.due("expansion-policy", now=1e9) is None  # v1 is never tried again

    held, _ = pending.hold(v2_announced, OUTAGE, now=50.0, wall=50.0)
    assert (held.version, held.backoff.attempts, held.since) == ("v2", 1, 50.0)
    assert pending.release("expansion-policy") is held
    assert pending.release("expansion-policy") is None
    assert pending.due("expansion-policy", now=1e9) is None


def _store_away(settings: Settings) -> Settings:
    """`settings` with an object store on a loopback port that was free a moment ago: nothing listens on it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return settings.model_copy(
        update={
            "model_store": "s3://models/prod",
            "objectstore_url": f"http://127.0.0.1:{port}",
            "objectstore_access_key": "k",
            "objectstore_secret_key": "s",
            "model_signing_key": "a key shared by the trainer and the replicas",
        }
    )


def test_a_store_that_is_not_listening_leaves_the_old_version_serving_and_is_no_refusal(api_settings, v1, v2):
    away = _store_away(api_settings)
    holder = ModelHolder()
    holder.swap(v1.load())
    served = holder.current
    outcome = apply(away, holder, announced(away, v2.path, model_name="expansion-policy"))
    assert (outcome.action, outcome.version, outcome.previous) == ("store_unavailable", "v2", "v1")
    assert isinstance(outcome.error, StoreUnavailable)
    assert holder.current is served


def test_a_replica_serving_nothing_falls_back_to_its_last_good_version_while_the_store_is_away(tmp_path, make_version):
    replica = _store_away(Settings(data_dir=tmp_path / "replica"))
    trainer = replica.model_copy(update={"data_dir": tmp_path / "trainer"})
    name = "expansion-policy"
    last_good = version_id(1, "run-1")  # promoted in the registry this replica shares with the trainer
    registry = model_registry(replica.registry_dir, name)
    shutil.copytree(make_version("pending-fallback-1", name=name, seed=1).path, registry.path(last_good))
    recorded = manifest.read_manifest(registry.path(last_good))
    manifest.write_manifest(registry.path(last_good), recorded.model_copy(update={"version": last_good}))

    holder = ModelHolder()
    record = announced(trainer, make_version("pending-fallback-2", name=name, seed=2).path, model_name=name)
    outcome = serve(replica, holder, record)
    assert (outcome.action, outcome.fallback) == ("store_unavailable", last_good)  # still to retry, not refused
    assert holder.current is not None and holder.current.version == last_good
    assert holder.fallback is not None and holder.fallback.refused_version == "pending-fallback-2"
    assert "model store is unavailable" in holder.fallback.reason


def _message(record: ModelPromoted, offset: int) -> Message:
    """The record as the follower's consumer hands it over."""
    topic = topics.MODEL_UPDATES
    return Message(topic=topic.name, partition=0, offset=offset, key=topic.key_of(record), value=topic.encode(record))


def test_the_follower_holds_an_update_while_the_store_is_away_and_a_rollback_to_the_served_version_settles_it(
    api_settings, v1, v2
):
    away = _store_away(api_settings)
    models = ModelHolders.for_settings(away)
    name, holder = next(iter(models.by_model_name().items()))
    holder.swap(v1.load())
    follower = ModelUpdates(away, models)
    # No broker: nothing may be produced (no refusal, no dead letter), so none is needed.
    producer = Producer({"bootstrap.servers": "127.0.0.1:1", "log_level": 0})

    follower._handle([_message(announced(away, v2.path, model_name=name), 7)], producer)
    assert holder.current.version == "v1"
    assert (holder.pending.version, holder.pending.attempts) == ("v2", 1)
    assert "unavailable" in holder.pending.reason

    time.sleep(2 * FIRST_DELAY_S + 0.1)  # past the first delay (with its jitter)
    follower._handle([], producer)  # nothing new: the held one is tried again, and waits on
    assert (holder.pending.version, holder.pending.attempts) == ("v2", 2)

    # An operator rolls back to the version serving while v2 waits: v2 is dropped, nothing waits any more.
    follower._handle([_message(announced(away, v1.path, model_name=name, action="rolled_back"), 8)], producer)
    assert holder.current.version == "v1" and holder.pending is None
    assert len(producer) == 0
