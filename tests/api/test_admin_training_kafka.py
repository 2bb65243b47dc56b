"""/v1/admin/training against the real broker: the commands it publishes, read back from a topic of the test's own."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient
from topic_reader import read_records

from api.main import create_app
from api.routes import admin_training
from ctrlgpt import secrets
from streams import bus
from streams.records import TrainingRequested
from streams.topics import Topic

pytestmark = pytest.mark.integration


@pytest.fixture
def topic(settings) -> Topic:
    made = Topic(f"ctrlgpt.test.admin.commands.{uuid.uuid4().hex[:12]}", TrainingRequested, key="command", partitions=1)
    bus.ensure_topics(settings, [made])
    return made


@pytest.fixture
def client(settings, tmp_path, topic):
    local = settings.model_copy(update={"data_dir": tmp_path})
    app = create_app(local, follow_updates=False)
    app.dependency_overrides[admin_training.training_commands_topic] = lambda: topic
    with TestClient(app, headers={"X-API-Key": secrets.load_or_create(local.secrets_file).api_admin_key}) as client:
        yield client


def read_all(settings, topic: Topic, count: int) -> list:
    return read_records(settings, topic, until=lambda found: len(found) >= count)


def test_train_now_and_cancel_publish_operator_commands(client, settings, topic):
    train = client.post("/v1/admin/training", json={"reason": "new data"})
    cancel = client.delete("/v1/admin/training", params={"run_id": "abc123", "reason": "wrong data"})
    cancel_any = client.delete("/v1/admin/training")
    assert (train.status_code, cancel.status_code, cancel_any.status_code) == (202, 202, 202)

    commands = read_all(settings, topic, 3)
    assert [(c.command, c.run_id, c.reason, c.requested_by) for c in commands] == [
        ("train", None, "new data", "api"),
        ("cancel", "abc123", "wrong data", "api"),
        ("cancel", None, "", "api"),
    ]
    assert commands[0].event_id == train.json()["event_id"]
