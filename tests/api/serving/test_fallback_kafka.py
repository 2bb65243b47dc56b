"""A broken version never leaves the API serving nothing, and every refusal is told on Kafka (the real broker).

- The current version's weights corrupted on disk, the API started: it serves the last good
  promoted version, `/health` says it is a fallback and why, `ModelLoadFailed` is published.
- A reload while the served version's files changed on disk: refused (409), `ModelLoadFailed`.
- A malformed and a too-large record on the model-updates topic: dead-lettered with a bounded
  excerpt, and the promotion after them is still loaded.
"""

from __future__ import annotations

import base64
import shutil
import uuid

import httpx
import pytest
from announced import announced
from fastapi.testclient import TestClient
from topic_reader import read_records

from api.main import create_app
from api.routes import admin_models
from api.serving.model_updates import ModelUpdates
from api.serving.served_model import ModelHolders
from ctrlgpt import secrets
from deploy.processes import wait_until
from models import manifest, operations
from models.announcements import published
from models.registry import Registry, version_id
from streams import bus, topics
from streams.records import DeadLetter, ModelLoadFailed, ModelPromoted
from streams.topics import Topic

pytestmark = pytest.mark.integration

TIMEOUT_S = 120.0  # bound on waiting for the broker and a load; no timing is asserted
BROKER_LIMIT_BYTES = 8 * 1024 * 1024  # deploy/kafka/broker.py's message.max.bytes


@pytest.fixture
def run() -> str:
    return uuid.uuid4().hex[:12]


@pytest.fixture
def local(settings, tmp_path, run):
    # A registry and a model name of its own: no other replica acts on what these tests announce.
    return settings.model_copy(
        update={
            "data_dir": tmp_path,
            "policy_name": f"test-fallback-{run}",
            "api_replica_id": f"test-{run}",
            "max_new_tokens_limit": 16,
        }
    )


def register(registry: Registry, fixture, number: int, run: str) -> str:
    """Copy a fixture version into the registry under a real version id, promoted."""
    version = version_id(number, run)
    shutil.copytree(fixture.path, registry.path(version))
    recorded = manifest.read_manifest(registry.path(version))
    manifest.write_manifest(registry.path(version), recorded.model_copy(update={"version": version}))
    registry.promote(version, f"test promotion {number}")
    return version


def corrupt(registry: Registry, version: str) -> None:
    weights = registry.path(version) / "policy" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))


def announcement(settings, registry: Registry, version: str) -> ModelPromoted:
    return published(settings, registry.path(version))


def load_failures(settings, replica: str, version: str) -> list[ModelLoadFailed]:
    return read_records(
        settings,
        topics.MODEL_LOAD_FAILURES,
        until=lambda found: bool(found),
        keep=lambda record: (
            isinstance(record, ModelLoadFailed) and record.replica == replica and record.version == version
        ),
        timeout=TIMEOUT_S,
    )


def test_an_api_started_on_a_corrupted_current_version_serves_the_last_good_one(
    settings, local, make_version, serve_api, run
):
    name = local.policy_for(local.target_sentiment)
    registry = operations.registry_for(local)
    good = register(registry, make_version(f"{run}-good", name=name, seed=1), 1, run)
    current = register(registry, make_version(f"{run}-current", name=name, seed=2), 2, run)
    bus.ensure_topics(settings, [topics.MODEL_UPDATES, topics.MODEL_LOAD_FAILURES, topics.dead_letter_topic("api")])
    producer = bus.make_producer(settings)
    bus.publish(producer, topics.MODEL_UPDATES, announcement(local, registry, current))
    bus.flush_or_raise(producer)
    corrupt(registry, current)  # after the announcement, before the API starts: as a disk would
    try:
        with serve_api(local, create_app(local, monitor_kafka=False)) as url:
            wait_until(
                lambda: httpx.get(f"{url}/health").json()["status"] == "fallback",
                what="fallback served",
                timeout=TIMEOUT_S,
            )
            health = httpx.get(f"{url}/health").json()
            assert health["model_version"] == good
            [fallback] = health["fallbacks"].values()
            assert (fallback["version"], fallback["refused_version"]) == (good, current)
            assert "ChecksumMismatch" in fallback["reason"]
            answer = httpx.post(
                f"{url}/v1/generate", json={"prompt": "The cat", "max_new_tokens": 2}, timeout=TIMEOUT_S
            )
            assert answer.status_code == 200 and answer.json()["model_version"] == good
        [failure] = load_failures(settings, local.api_replica_id, current)
        assert (failure.model_name, failure.serving_version, failure.error_type) == (name, good, "ChecksumMismatch")
        assert "fallback" in failure.reason
    finally:
        producer.produce(topics.MODEL_UPDATES.name, key=name.encode(), value=None)  # retire the test's name
        producer.flush(30)


def test_reload_refuses_a_served_version_whose_files_changed_and_publishes_the_failure(
    settings, local, make_version, run
):
    name = local.policy_for(local.target_sentiment)
    registry = operations.registry_for(local)
    served = register(registry, make_version(f"{run}-served", name=name, seed=1), 1, run)
    updates = Topic(f"ctrlgpt.test.reload.updates.{run}", ModelPromoted, key="model_name", partitions=1)
    bus.ensure_topics(settings, [updates, topics.MODEL_LOAD_FAILURES])
    app = create_app(local, follow_updates=False)
    app.dependency_overrides[admin_models.model_updates_topic] = lambda: (
        updates
    )  # nothing announced: the registry's CURRENT
    with TestClient(app, headers={"X-API-Key": secrets.load_or_create(local.secrets_file).api_admin_key}) as client:
        first = client.post("/v1/admin/models/reload")
        assert first.status_code == 200 and first.json()["models"][0]["version"] == served, first.text
        again = client.post("/v1/admin/models/reload")
        assert again.status_code == 200 and again.json()["models"][0]["action"] == "already_serving", again.text

        corrupt(registry, served)
        refused = client.post("/v1/admin/models/reload")
        assert refused.status_code == 409, refused.text
        assert "does not match" in refused.json()["detail"]
        assert client.get("/health").json()["model_version"] == served  # the verified copy in memory serves on
    [failure] = load_failures(settings, local.api_replica_id, served)
    assert (failure.serving_version, failure.error_type) == (served, "ChecksumMismatch")


def test_malformed_and_oversized_updates_are_dead_lettered_and_a_later_promotion_is_loaded(
    settings, local, make_version, run
):
    # A private compacted topic: a broken record on the shared one would be re-read by every replica.
    topic = Topic(f"ctrlgpt.test.models.{run}", ModelPromoted, key="model_name", partitions=1, cleanup_policy="compact")
    bus.ensure_topics(settings, [topic, topics.dead_letter_topic("api")])
    name = local.policy_for(local.target_sentiment)
    version = make_version(f"{run}-ok", name=name)
    oversized = b"{" + b"x" * (BROKER_LIMIT_BYTES - 64 * 1024) + b"}"  # just under the broker's limit
    producer = bus.make_producer(settings)
    producer.produce(topic.name, key=name.encode(), value=b'{"version": 3, "oops": true}')
    producer.produce(topic.name, key=name.encode(), value=oversized)
    bus.publish(
        producer,
        topic,
        announced(local, version.path, model_name=name),
    )
    bus.flush_or_raise(producer)

    models = ModelHolders.for_settings(local)
    updates = ModelUpdates(local, models, topic=topic)
    updates.start()
    try:
        wait_until(
            lambda: models.holder("positive").current is not None, what=f"{version.version} loaded", timeout=TIMEOUT_S
        )
        assert models.holder("positive").current.version == version.version
        letters = read_records(
            settings,
            topics.dead_letter_topic("api"),
            until=lambda found: len(found) >= 2,
            keep=lambda letter: isinstance(letter, DeadLetter) and letter.source_topic == topic.name,
            timeout=TIMEOUT_S,
        )
    finally:
        updates.stop()
    by_type = {letter.error_type: letter for letter in letters}
    assert sorted(by_type) == ["ContractError", "RecordTooLarge"]
    assert base64.b64decode(by_type["ContractError"].original_base64) == b'{"version": 3, "oops": true}'
    too_large = by_type["RecordTooLarge"]
    assert too_large.truncated and too_large.original_size == len(oversized)
    assert oversized.startswith(base64.b64decode(too_large.original_base64))
    assert str(len(oversized)) in too_large.reason and too_large.offset == 1
