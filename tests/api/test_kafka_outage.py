"""The API's Kafka followers ride out a broker that is away: they wait, rejoin, and never die.

The real broker is killed (SIGKILL, kept down) for longer than the model-updates consumer's
session timeout, then started again: the promotion published after it is loaded, and the
dashboard's follower folds it, with both threads alive throughout.
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from announced import announced
from faults import kill_service, start_service

from api.ops.events import EventFollower, ModelVersions, TrainingRuns
from api.serving.model_updates import ModelUpdates
from api.serving.served_model import ModelHolders
from ctrlgpt.settings import Settings
from deploy.processes import wait_until
from streams import bus, topics
from streams.records import ModelPromoted
from streams.topics import Topic

pytestmark = pytest.mark.integration

TIMEOUT_S = 120.0  # bound on waiting for the broker and a load; no timing is asserted
OUTAGE_S = 30.0  # longer than the follower's 10 s session timeout: the group forgets it


def _promoted(version, name: str) -> ModelPromoted:
    """Announced as the trainer would, into the store of the replicas under test (the stack's data directory)."""
    return announced(Settings(), version.path, model_name=name)


def test_the_model_updates_and_ops_event_followers_ride_out_a_broker_outage(settings, make_version):
    run = uuid.uuid4().hex[:12]
    local = settings.model_copy(update={"policy_name": f"test-outage-{run}", "api_replica_id": f"test-{run}"})
    name = local.policy_for(local.target_sentiment)
    topic = Topic(f"ctrlgpt.test.outage.{run}", ModelPromoted, key="model_name", partitions=1, cleanup_policy="compact")
    bus.ensure_topics(settings, [topic, topics.MODEL_UPDATES, topics.TRAINING_RUNS, topics.dead_letter_topic("api")])
    before, after = make_version(f"{run}-before", name=name, seed=1), make_version(f"{run}-after", name=name, seed=2)

    def publish(version) -> None:
        producer = bus.make_producer(settings)
        bus.publish(producer, topic, _promoted(version, name))
        bus.publish(producer, topics.MODEL_UPDATES, _promoted(version, name))  # what the dashboard follows
        bus.flush_or_raise(producer)

    models = ModelHolders.for_settings(local)
    holder = models.holder(local.target_sentiment)
    updates = ModelUpdates(local, models, topic=topic)
    versions = ModelVersions()
    follower = EventFollower(local, TrainingRuns(), versions, threading.Lock())

    def folded(version: str) -> bool:
        return any(v["model_name"] == name and v["version"] == version for v in versions.all())

    def followers_alive() -> bool:
        return {"model-updates", "ops-events"} <= {thread.name for thread in threading.enumerate()}  # the live threads

    publish(before)
    updates.start()
    follower.start()
    try:
        wait_until(
            lambda: getattr(holder.current, "version", None) == before.version,
            what="first version served",
            timeout=TIMEOUT_S,
        )
        wait_until(lambda: folded(before.version), what="first version folded", timeout=TIMEOUT_S)

        kill_service(settings, "kafka")
        try:
            time.sleep(OUTAGE_S)
            assert followers_alive(), "a follower died while Kafka was away"
        finally:
            start_service(settings, "kafka")

        publish(after)
        wait_until(
            lambda: getattr(holder.current, "version", None) == after.version,
            what="the promotion after the outage served",
            timeout=TIMEOUT_S,
        )
        wait_until(lambda: folded(after.version), what="the promotion after the outage folded", timeout=TIMEOUT_S)
        assert followers_alive()
    finally:
        updates.stop()
        follower.stop()
        producer = bus.make_producer(settings)
        producer.produce(topics.MODEL_UPDATES.name, key=name.encode(), value=None)  # retire the test's name
        producer.flush(30)
