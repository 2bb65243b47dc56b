"""/metrics of an API that monitors the real broker, and of one whose broker is unreachable."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Producer, TopicPartition
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from api.main import create_app
from streams import bus
from streams.records import DeadLetter
from streams.topics import Topic

pytestmark = pytest.mark.integration


def values(text: str, name: str) -> dict[frozenset, float]:
    return {
        frozenset(s.labels.items()): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


def scrape_when_exporting(client: TestClient, timeout: float = 60.0) -> str:
    """/metrics once this replica holds the exporter lease (joining the group takes a few seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        text = client.get("/metrics").text
        if values(text, "ctrlgpt_ops_exporter") == {frozenset(): 1.0} or time.monotonic() > deadline:
            return text
        time.sleep(0.5)


def test_metrics_export_a_groups_lag_from_the_broker(api_settings):
    run = uuid.uuid4().hex
    topic = Topic(f"ctrlgpt.test.metrics.{run}", DeadLetter, key="key", partitions=1)
    group = f"test-metrics-{run}"
    bus.ensure_topics(api_settings, [topic])
    producer = Producer({"bootstrap.servers": api_settings.kafka_bootstrap})
    for i in range(7):
        producer.produce(topic.name, value=b"x%d" % i)
    assert producer.flush(30) == 0
    consumer = bus.make_consumer(api_settings, group)
    consumer.commit(offsets=[TopicPartition(topic.name, 0, 4)], asynchronous=False)
    consumer.close()

    settings = api_settings.model_copy(
        update={"ops_groups": f"^{group}$", "ops_sample_interval_s": 1.0, "ops_exporter_group": f"test-lease-{run}"}
    )
    with TestClient(create_app(settings, follow_updates=False, monitor_kafka=True)) as client:
        text = scrape_when_exporting(client)
    assert values(text, "ctrlgpt_kafka_up") == {frozenset(): 1.0}
    labels = frozenset({"consumergroup": group, "topic": topic.name, "partition": "0"}.items())
    assert values(text, "kafka_consumergroup_lag")[labels] == 3.0
    assert values(text, "kafka_consumergroup_current_offset")[labels] == 4.0
    assert (
        values(text, "kafka_topic_partition_current_offset")[frozenset({"topic": topic.name, "partition": "0"}.items())]
        == 7.0
    )
    assert {dict(k)["consumergroup"] for k in values(text, "kafka_consumergroup_lag")} == {group}
    assert values(text, "ctrlgpt_dead_letters_total")  # every stage's dead-letter topic exists on the demo's broker


def test_an_unreachable_broker_answers_200_with_up_zero(api_settings):
    settings = api_settings.model_copy(update={"kafka_bootstrap": "127.0.0.1:9", "ops_kafka_timeout_s": 1.0})
    with TestClient(create_app(settings, follow_updates=False, monitor_kafka=True)) as client:
        response = client.get("/metrics")
        history = client.get("/v1/ops/lag-history")
    assert response.status_code == 200
    assert values(response.text, "ctrlgpt_kafka_up") == {frozenset(): 0.0}
    assert not values(response.text, "kafka_consumergroup_lag")
    assert history.status_code == 200 and history.json()["points"] == []


def test_only_the_replica_holding_the_lease_exports_the_cluster_series_and_another_takes_over(api_settings):
    run = uuid.uuid4().hex
    settings = api_settings.model_copy(update={"ops_sample_interval_s": 0.5, "ops_exporter_group": f"test-lease-{run}"})
    first = TestClient(create_app(settings, follow_updates=False, monitor_kafka=True))
    second = TestClient(create_app(settings, follow_updates=False, monitor_kafka=True))
    with first, second:
        deadline = time.monotonic() + 60
        while True:
            exporting = [values(c.get("/metrics").text, "ctrlgpt_ops_exporter")[frozenset()] for c in (first, second)]
            if sum(exporting) == 1.0 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert sorted(exporting) == [0.0, 1.0]
        holder, other = (first, second) if exporting[0] == 1.0 else (second, first)
        assert values(holder.get("/metrics").text, "ctrlgpt_dead_letters_total")
        assert not values(other.get("/metrics").text, "ctrlgpt_dead_letters_total")
        assert not values(other.get("/metrics").text, "kafka_topic_partition_current_offset")
        assert values(other.get("/metrics").text, "ctrlgpt_kafka_up") == {frozenset(): 1.0}  # its own view stays
        holder.__exit__(None, None, None)  # the exporting replica stops: its lease goes to the other
        text = scrape_when_exporting(other)
        assert values(text, "ctrlgpt_ops_exporter") == {frozenset(): 1.0}
        assert values(text, "ctrlgpt_dead_letters_total")
