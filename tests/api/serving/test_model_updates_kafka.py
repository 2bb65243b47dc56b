"""The API follows the real model-updates topic: swaps on each promotion, keeps serving on a bad one."""

from __future__ import annotations

import uuid

import pytest
from announced import announced
from fastapi.testclient import TestClient
from topic_reader import read_records

from api.main import create_app
from api.serving.model_updates import ModelUpdates
from api.serving.served_model import ModelHolders
from ctrlgpt.settings import Settings
from deploy.processes import wait_until
from models.announcements import model_update, signing_key
from models.manifest import read_manifest
from streams import bus, topics
from streams.records import DeadLetter, ModelLoadFailed, ModelPromoted
from streams.topics import Topic

pytestmark = pytest.mark.integration

TIMEOUT_S = 120.0  # bound on waiting for the broker and a load; no timing is asserted


def _promoted(version, model_name: str = "expansion-policy") -> ModelPromoted:
    """Announced as the trainer would, into the store of the replicas under test (the stack's data directory)."""
    return announced(Settings(), version.path, model_name=model_name)


def _serving(client: TestClient, version: str) -> bool:
    return client.get("/health").json()["model_version"] == version


def _generated_by(client: TestClient) -> str:
    response = client.post("/generate", json={"prompt": "The cat", "max_new_tokens": 4})
    assert response.status_code == 200, response.text
    return response.json()["model_version"]


def test_api_swaps_on_each_promotion_and_dead_letters_a_tampered_one(settings, make_version, tampered):
    run = uuid.uuid4().hex[:12]
    # A model name of its own, so the demo's API (serving expansion-policy) never sees these versions.
    api_settings = settings.model_copy(
        update={"policy_name": f"test-policy-{run}", "api_replica_id": f"test-{run}", "max_new_tokens_limit": 16}
    )
    name = api_settings.policy_for(api_settings.target_sentiment)
    first, second, bad = make_version(f"{run}-a"), make_version(f"{run}-b", parent=f"{run}-a"), tampered(f"{run}-bad")

    def promote(version) -> None:
        bus.publish(producer, topics.MODEL_UPDATES, _promoted(version, model_name=name))
        bus.flush_or_raise(producer)

    bus.ensure_topics(settings, [topics.MODEL_UPDATES, topics.dead_letter_topic("api")])
    producer = bus.make_producer(settings)
    try:
        promote(first)  # before the replica starts: it must learn it from the compacted topic
        with TestClient(create_app(api_settings)) as client:
            wait_until(lambda: _serving(client, first.version), what=f"API serving {first.version}", timeout=TIMEOUT_S)
            assert _generated_by(client) == first.version

            promote(second)
            wait_until(
                lambda: _serving(client, second.version), what=f"API serving {second.version}", timeout=TIMEOUT_S
            )
            assert _generated_by(client) == second.version
            assert client.get("/v1/models/current").json()["parent_version"] == first.version

            promote(bad)
            letters = read_records(
                settings,
                topics.dead_letter_topic("api"),
                until=lambda found: bool(found),
                keep=lambda letter: (
                    isinstance(letter, DeadLetter) and letter.key == name and bad.version in letter.reason
                ),
                timeout=TIMEOUT_S,
            )
            assert letters, f"no dead letter for {bad.version}"
            assert letters[0].error_type == "ChecksumMismatch"
            assert letters[0].source_topic == topics.MODEL_UPDATES.name
            assert _serving(client, second.version)
            assert _generated_by(client) == second.version
    finally:
        # A tombstone retires the test's model name from the compacted topic.
        producer.produce(topics.MODEL_UPDATES.name, key=name.encode(), value=None)
        producer.flush(30)


def test_a_record_that_breaks_the_contract_is_dead_lettered_and_the_next_one_served(settings, make_version):
    run = uuid.uuid4().hex[:12]
    # A private compacted topic: a malformed record on the shared one would be re-read by every replica.
    topic = Topic(f"ctrlgpt.test.models.{run}", ModelPromoted, key="model_name", partitions=1, cleanup_policy="compact")
    bus.ensure_topics(settings, [topic, topics.dead_letter_topic("api")])
    version = make_version(f"{run}-ok")
    producer = bus.make_producer(settings)
    producer.produce(topic.name, key=b"expansion-policy", value=b'{"version": 3, "oops": true}')
    bus.publish(producer, topic, _promoted(version, model_name=settings.policy_for("positive")))
    bus.flush_or_raise(producer)

    models = ModelHolders.for_settings(settings)
    holder = models.holder("positive")
    updates = ModelUpdates(settings.model_copy(update={"api_replica_id": f"test-{run}"}), models, topic=topic)
    updates.start()
    try:
        wait_until(lambda: holder.current is not None, what=f"{version.version} loaded", timeout=TIMEOUT_S)
        assert holder.current.version == version.version
        letters = read_records(
            settings,
            topics.dead_letter_topic("api"),
            until=lambda found: bool(found),
            keep=lambda letter: isinstance(letter, DeadLetter) and letter.source_topic == topic.name,
            timeout=TIMEOUT_S,
        )
    finally:
        updates.stop()
    assert [letter.error_type for letter in letters] == ["ContractError"]
    assert "invalid ModelPromoted" in letters[0].reason


def test_one_consumer_follows_the_policy_of_every_target(settings, make_version):
    run = uuid.uuid4().hex[:12]
    api_settings = settings.model_copy(
        update={
            "policy_name": f"test-policy-{run}",
            "targets": "positive,negative,neutral",
            "api_replica_id": f"test-{run}",
        }
    )
    positive, negative = make_version(f"{run}-pos", seed=1), make_version(f"{run}-neg", seed=2)
    names = {target: api_settings.policy_for(target) for target in ("positive", "negative")}
    bus.ensure_topics(settings, [topics.MODEL_UPDATES, topics.dead_letter_topic("api")])
    producer = bus.make_producer(settings)
    try:
        bus.publish(producer, topics.MODEL_UPDATES, _promoted(positive, model_name=names["positive"]))
        bus.publish(producer, topics.MODEL_UPDATES, _promoted(negative, model_name=names["negative"]))
        bus.flush_or_raise(producer)
        with TestClient(create_app(api_settings)) as client:
            models = client.app.state.models
            wait_until(
                lambda: models.holder("positive").current is not None and models.holder("negative").current is not None,
                what="both targets served",
                timeout=TIMEOUT_S,
            )
            for target, version in (("positive", positive), ("negative", negative)):
                answer = client.post("/v1/generate", json={"prompt": "The cat", "max_new_tokens": 2, "target": target})
                assert answer.json()["model_version"] == version.version
            assert client.post("/v1/generate", json={"prompt": "The cat", "target": "neutral"}).status_code == 503
            listed = {card["id"]: card["version"] for card in client.get("/v1/models").json()["data"]}
            assert listed == {names["positive"]: positive.version, names["negative"]: negative.version}
    finally:
        for name in names.values():
            producer.produce(topics.MODEL_UPDATES.name, key=name.encode(), value=None)
        producer.flush(30)


def test_announcements_the_replica_cannot_trust_are_refused_and_published_as_load_failures(settings, make_version):
    """On the real topic: a record written by hand (unsigned, or signed with another key) and a signed record of
    a directory outside the store each leave the served version in place and give a `ModelLoadFailed`."""
    run = uuid.uuid4().hex[:12]
    api_settings = settings.model_copy(
        update={"policy_name": f"test-policy-{run}", "api_replica_id": f"test-{run}", "max_new_tokens_limit": 16}
    )
    name = api_settings.policy_for(api_settings.target_sentiment)
    good, other = make_version(f"{run}-good", name=name, seed=1), make_version(f"{run}-other", name=name, seed=2)
    genuine = _promoted(other, model_name=name)
    untrusted = {
        "Unauthenticated": genuine.model_copy(update={"signature": ""}),
        "OutsideStore": model_update(
            other.path.as_uri(), read_manifest(other.path), other.manifest_sha256, key=signing_key(api_settings)
        ),
    }
    bus.ensure_topics(settings, [topics.MODEL_UPDATES, topics.MODEL_LOAD_FAILURES])
    producer = bus.make_producer(settings)
    try:
        bus.publish(producer, topics.MODEL_UPDATES, _promoted(good, model_name=name))
        bus.flush_or_raise(producer)
        with TestClient(create_app(api_settings, monitor_kafka=False)) as client:
            wait_until(lambda: _serving(client, good.version), what=f"API serving {good.version}", timeout=TIMEOUT_S)
            for error_type, record in untrusted.items():  # one at a time: a later one would supersede it
                bus.publish(producer, topics.MODEL_UPDATES, record)
                bus.flush_or_raise(producer)
                [failure] = read_records(
                    settings,
                    topics.MODEL_LOAD_FAILURES,
                    until=lambda found: bool(found),
                    keep=lambda r, t=error_type: (
                        isinstance(r, ModelLoadFailed) and r.replica == f"test-{run}" and r.error_type == t
                    ),
                    timeout=TIMEOUT_S,
                )
                assert (failure.version, failure.serving_version) == (other.version, good.version)
                assert _generated_by(client) == good.version
    finally:
        producer.produce(topics.MODEL_UPDATES.name, key=name.encode(), value=None)
        producer.flush(30)
