"""/v1/admin/models against the real broker: what rollback and pin announce, what reload serves (own topics)."""

from __future__ import annotations

import shutil
import socket
import uuid

import pytest
from announced import announced
from fastapi.testclient import TestClient
from registry_versions import add_version
from topic_reader import read_records

from api.main import create_app
from api.routes import admin_models
from ctrlgpt import secrets
from models import manifest, operations
from models.registry import version_id
from streams import bus
from streams.records import ModelPromoted
from streams.topics import Topic

pytestmark = pytest.mark.integration


@pytest.fixture
def run() -> str:
    return uuid.uuid4().hex[:12]


@pytest.fixture
def local(settings, tmp_path, run):
    # A model name of its own: no other replica acts on what these tests announce.
    return settings.model_copy(
        update={
            "data_dir": tmp_path,
            "policy_name": f"test-admin-{run}",
            "api_replica_id": f"test-{run}",
            "max_new_tokens_limit": 16,
            "targets": "positive",  # one target's versions are announced and served here
        }
    )


@pytest.fixture
def test_topics(settings, run) -> dict[str, Topic]:
    made = {
        "updates": Topic(f"ctrlgpt.test.admin.updates.{run}", ModelPromoted, key="model_name", partitions=1),
    }
    bus.ensure_topics(settings, list(made.values()))
    return made


@pytest.fixture
def client(local, test_topics):
    app = create_app(local, follow_updates=False)
    app.dependency_overrides[admin_models.model_updates_topic] = lambda: test_topics["updates"]
    with TestClient(app, headers={"X-API-Key": secrets.load_or_create(local.secrets_file).api_admin_key}) as client:
        yield client


def read_all(settings, topic: Topic, count: int) -> list:
    return read_records(settings, topic, until=lambda found: len(found) >= count)


def test_rollback_and_pin_are_announced_to_every_replica(client, settings, local, test_topics):
    registry = operations.registry_for(local)
    name = local.policy_for(local.target_sentiment)
    first = add_version(registry, 1, name=name)
    registry.promote(first, "first")
    second = add_version(registry, 2, parent=first, name=name)
    registry.promote(second, "better")

    rolled = client.post("/v1/admin/models/rollback", json={"version": first, "reason": "second says nonsense"})
    assert rolled.status_code == 200, rolled.text
    assert rolled.json()["previous"] == second and registry.current() == first
    pinned = client.post(f"/v1/admin/models/{second}/pin", json={"reason": "fixed upstream"})
    assert pinned.status_code == 200, pinned.text
    assert registry.current() == second and registry.pinned() == second

    announced = read_all(settings, test_topics["updates"], 2)
    assert [(a.version, a.action, a.reason, a.model_name) for a in announced] == [
        (first, "rolled_back", "second says nonsense", name),
        (second, "pinned", "fixed upstream", name),
    ]
    assert announced[1].manifest_sha256 == manifest.sha256_of(registry.path(second) / manifest.MANIFEST)
    [listed] = client.get("/v1/admin/models").json()["models"]
    assert listed["pinned"] == second and [v["status"] for v in listed["versions"]] == ["promoted", "promoted"]


def test_reload_serves_the_last_announced_version(client, settings, local, test_topics, make_version, run):
    name = local.policy_for(local.target_sentiment)
    older, version = make_version(f"{run}-a", name=name), make_version(f"{run}-b", name=name, parent=f"{run}-a")
    producer = bus.make_producer(settings)
    for fixture in (older, version):
        bus.publish(producer, test_topics["updates"], announced(local, fixture.path, model_name=name))
    bus.flush_or_raise(producer)

    first = client.post("/v1/admin/models/reload")
    again = client.post("/v1/admin/models/reload")

    assert first.status_code == 200, first.text
    [reloaded] = first.json()["models"]
    assert (reloaded["action"], reloaded["version"], reloaded["source"]) == ("swapped", version.version, "topic")
    assert again.json()["models"][0]["action"] == "already_serving"
    assert client.get("/health").json()["model_version"] == version.version


def test_reload_with_nothing_announced_or_current_changes_nothing(client):
    response = client.post("/v1/admin/models/reload")
    assert response.status_code == 200, response.text
    assert [m["action"] for m in response.json()["models"]] == ["nothing_to_serve"]
    assert client.get("/health").json()["model_version"] is None


def test_reload_falls_back_to_the_registry_and_refuses_a_broken_version(client, local, make_version, run):
    fixture = make_version(f"{run}-c", name=local.policy_for(local.target_sentiment))
    registry = operations.registry_for(local)
    version = version_id(1, run)
    shutil.copytree(fixture.path, registry.path(version))
    recorded = manifest.read_manifest(registry.path(version))
    manifest.write_manifest(registry.path(version), recorded.model_copy(update={"version": version}))
    registry.promote(version, "first")

    assert client.post("/v1/admin/models/reload").json()["models"][0]["source"] == "registry"
    assert client.get("/health").json()["model_version"] == version

    broken = version_id(2, run)
    shutil.copytree(registry.path(version), registry.path(broken))
    manifest.write_manifest(
        registry.path(broken), manifest.read_manifest(registry.path(broken)).model_copy(update={"version": broken})
    )
    registry.promote(broken, "second")
    weights = registry.path(broken) / "policy" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1])

    response = client.post("/v1/admin/models/reload")
    assert response.status_code == 409 and f"{version} keeps serving" in response.json()["detail"]
    assert client.get("/health").json()["model_version"] == version


def test_reload_answers_503_not_a_refusal_while_the_model_store_is_away(
    settings, local, test_topics, make_version, run
):
    with socket.socket() as probe:  # a port free a moment ago: nothing listens on it
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    away = local.model_copy(
        update={
            "model_store": "s3://models/prod",
            "objectstore_url": f"http://127.0.0.1:{port}",
            "objectstore_access_key": "k",
            "objectstore_secret_key": "s",
        }
    )
    name = away.policy_for(away.target_sentiment)
    producer = bus.make_producer(settings)
    bus.publish(
        producer, test_topics["updates"], announced(away, make_version(f"{run}-d", name=name).path, model_name=name)
    )
    bus.flush_or_raise(producer)
    app = create_app(away, follow_updates=False)
    app.dependency_overrides[admin_models.model_updates_topic] = lambda: test_topics["updates"]
    with TestClient(app, headers={"X-API-Key": secrets.load_or_create(away.secrets_file).api_admin_key}) as client:
        response = client.post("/v1/admin/models/reload")
        assert response.status_code == 503, response.text
        assert response.headers["Retry-After"] == "10"
        assert f"{run}-d" in response.json()["detail"] and "unavailable" in response.json()["detail"]
        assert client.get("/health").json()["model_version"] is None
