"""The local Kafka Connect worker with Debezium's connector: configuration (pure) and the running worker (integration)."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import httpx
import pytest
from confluent_kafka import Consumer

from consumers.doccano_client import DoccanoClient
from ctrlgpt import secrets
from ctrlgpt.settings import Settings
from deploy.connect import worker
from streams import topics


def _properties(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines())


def test_the_worker_is_distributed_on_our_kafka_with_its_rest_api_on_the_loopback() -> None:
    settings = Settings(kafka_bootstrap="127.0.0.1:7000", connect_url="http://127.0.0.1:7083", connect_group="g")
    properties = _properties(worker.worker_properties(settings))
    assert (properties["bootstrap.servers"], properties["group.id"], properties["listeners"]) == (
        "127.0.0.1:7000",
        "g",
        "http://127.0.0.1:7083",
    )
    assert [properties[f"{kind}.storage.topic"] for kind in ("config", "offset", "status")] == [
        "g-configs",
        "g-offsets",
        "g-status",
    ]


def test_the_connector_reads_the_followed_tables_through_pgoutput_and_holds_no_password() -> None:
    settings = Settings(cdc_topic_prefix="p")
    config = worker.connector_config(settings, Path("/x/pw.properties"))
    assert config["plugin.name"] == "pgoutput" and config["publication.autocreate.mode"] == "disabled"
    assert config["table.include.list"].split(",") == [f"public.{table}" for table in topics.DOCCANO_CHANGE_TABLES]
    assert config["database.password"] == "${file:/x/pw.properties:password}"
    assert config["tombstones.on.delete"] == "false" and config["topic.prefix"] == "p"


@pytest.mark.integration
def test_the_connector_runs_registered_once_and_its_password_stays_in_an_owner_only_file(settings: Settings) -> None:
    assert worker.ready(settings)
    with httpx.Client(base_url=settings.connect_url, timeout=10) as client:
        worker.ensure_connector(settings, client)  # as wanted already: nothing changes
        config = client.get(f"/connectors/{worker.CONNECTOR}/config").json()
        assert client.get("/connectors").json() == [worker.CONNECTOR]
    password = secrets.load_or_create(settings.secrets_file).cdc_db_password
    assert password not in json.dumps(config)
    assert worker.password_file(settings).stat().st_mode & 0o777 == 0o600


@pytest.mark.integration
def test_an_example_made_through_doccanos_api_is_a_change_record(settings: Settings, doccano: DoccanoClient) -> None:
    project = doccano.get_or_create_text_classification_project(
        f"ctrlgpt test cdc {uuid.uuid4().hex[:8]}", description="t"
    )
    try:
        example = doccano.create_example(project["id"], "Changes flow.", {})
        consumer = Consumer(
            {
                "bootstrap.servers": settings.kafka_bootstrap,
                "group.id": f"test-{uuid.uuid4().hex}",
                "auto.offset.reset": "earliest",
            }
        )
        consumer.subscribe([topics.doccano_change_topic(settings.cdc_topic_prefix, "examples_example").name])
        deadline, found = time.monotonic() + 60, None
        while found is None and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is not None and not msg.error():
                row = json.loads(msg.value())["after"]
                if row and row["id"] == example["id"]:
                    found = row
        consumer.close()
        assert found is not None and found["project_id"] == project["id"] and found["text"] == "Changes flow."
    finally:
        doccano.delete_project(project["id"])
