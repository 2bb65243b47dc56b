"""The API follows the real model-updates topic: swaps on each promotion, keeps serving on a bad one."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.model_updates import ModelUpdates
from api.served_model import ModelHolder
from deploy.processes import wait_until
from streams import bus, topics
from streams.records import DeadLetter, ModelPromoted
from streams.topics import Topic
from topic_reader import read_records

pytestmark = pytest.mark.integration

TIMEOUT_S = 120.0  # bound on waiting for the broker and a load; no timing is asserted


def _promoted(version, model_name: str = "expansion-policy") -> ModelPromoted:
    return ModelPromoted(
        model_name=model_name, version=version.version, path=str(version.path), manifest_sha256=version.manifest_sha256
    )


def _serving(client: TestClient, version: str) -> bool:
    return client.get("/health").json()["model_version"] == version


def _generated_by(client: TestClient) -> str:
    response = client.post("/generate", json={"prompt": "The cat", "max_new_tokens": 4})
    assert response.status_code == 200, response.text
    return response.json()["model_version"]


def test_api_swaps_on_each_promotion_and_dead_letters_a_tampered_one(settings, make_version, tampered):
    run = uuid.uuid4().hex[:12]
    # A model name of its own, so the demo's API (serving expansion-policy) never sees these versions.
    name = f"test-policy-{run}"
    api_settings = settings.model_copy(
        update={"policy_name": name, "api_replica_id": f"test-{run}", "max_new_tokens_limit": 16}
    )
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
            wait_until(lambda: _serving(client, second.version), what=f"API serving {second.version}", timeout=TIMEOUT_S)
            assert _generated_by(client) == second.version
            assert client.get("/v1/models/current").json()["parent_version"] == first.version

            promote(bad)
            letters = read_records(
                settings,
                topics.dead_letter_topic("api"),
                until=lambda found: bool(found),
                keep=lambda letter: isinstance(letter, DeadLetter) and letter.key == name and bad.version in letter.reason,
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
    bus.publish(producer, topic, _promoted(version))
    bus.flush_or_raise(producer)

    holder = ModelHolder()
    updates = ModelUpdates(settings.model_copy(update={"api_replica_id": f"test-{run}"}), holder, topic=topic)
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
