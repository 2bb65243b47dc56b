"""/metrics without a broker: what the collector exports from a snapshot, and when Kafka fails or hangs."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from api.main import create_app
from api.ops.metrics import build_registry
from api.ops.monitor import OpsMonitor
from api.serving.served_model import Fallback, ModelHolder, ModelHolders, PendingUpdate
from streams import groups
from streams.consumer_lag import GroupOffsets, OffsetsSnapshot
from streams.records import TrainingRunProgressed


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def scrape(monitor: OpsMonitor | None, holder: ModelHolder | ModelHolders | None = None) -> dict:
    registry, _ = build_registry(monitor, holder or ModelHolder())
    return samples(generate_latest(registry).decode())


def snapshot() -> OffsetsSnapshot:
    return OffsetsSnapshot(
        taken_at=1000.0,
        end_offsets={("ctrlgpt.pages.clean", 0): 12, ("ctrlgpt.pages.clean", 1): 8, ("ctrlgpt.dlq.index", 0): 3},
        groups=(
            GroupOffsets(
                groups.INDEX_SINK,
                {("ctrlgpt.pages.clean", 0): 7, ("ctrlgpt.pages.clean", 1): 8},
                state="STABLE",
                members=1,
                owned=frozenset({("ctrlgpt.pages.clean", 0)}),
            ),
        ),
    )


@pytest.fixture
def ops_settings(api_settings):
    return api_settings.model_copy(update={"ops_kafka_timeout_s": 0.5})


def test_kafka_figures_use_kafka_exporter_names(ops_settings) -> None:
    monitor = OpsMonitor(ops_settings, read=snapshot)
    monitor.runs.add(TrainingRunProgressed(run_id="r1", stage="done"))
    monitor.runs.add(TrainingRunProgressed(run_id="r2", stage="ppo"))
    got = scrape(monitor)
    group = {"consumergroup": groups.INDEX_SINK, "topic": "ctrlgpt.pages.clean"}
    assert got[("ctrlgpt_kafka_up", frozenset())] == 1.0
    assert got[("kafka_consumergroup_lag", frozenset({**group, "partition": "0"}.items()))] == 5.0
    assert got[("kafka_consumergroup_lag", frozenset({**group, "partition": "1"}.items()))] == 0.0
    assert got[("kafka_consumergroup_current_offset", frozenset({**group, "partition": "0"}.items()))] == 7.0
    assert got[("kafka_consumergroup_lag_sum", frozenset(group.items()))] == 5.0
    assert (
        got[
            (
                "kafka_topic_partition_current_offset",
                frozenset({"topic": "ctrlgpt.dlq.index", "partition": "0"}.items()),
            )
        ]
        == 3.0
    )
    assert got[("ctrlgpt_topic_records_total", frozenset({"topic": "ctrlgpt.pages.clean"}.items()))] == 20.0
    assert got[("ctrlgpt_dead_letters_total", frozenset({"stage": "index"}.items()))] == 3.0
    status = {
        dict(labels)["ctrlgpt_consumergroup_status"]: value
        for (name, labels), value in got.items()
        if name == "ctrlgpt_consumergroup_status"
    }
    assert status["OK"] == 1.0 and status["STOP"] == 0.0
    assert got[("ctrlgpt_training_runs", frozenset({"stage": "done"}.items()))] == 1.0
    assert got[("ctrlgpt_training_runs", frozenset({"stage": "ppo"}.items()))] == 1.0


def test_kafka_down_leaves_only_the_up_gauge(ops_settings) -> None:
    def unreachable() -> OffsetsSnapshot:
        raise ConnectionError("broker down")

    got = scrape(OpsMonitor(ops_settings, read=unreachable))
    assert got[("ctrlgpt_kafka_up", frozenset())] == 0.0
    assert not [name for name, _ in got if name.startswith("kafka_") or name.startswith("ctrlgpt_topic")]


def test_a_hanging_broker_does_not_hang_the_scrape(ops_settings) -> None:
    release = threading.Event()

    def hangs() -> OffsetsSnapshot:
        release.wait(60)
        return snapshot()

    monitor = OpsMonitor(ops_settings, read=hangs)
    try:
        assert scrape(monitor)[("ctrlgpt_kafka_up", frozenset())] == 0.0
        assert scrape(monitor)[("ctrlgpt_kafka_up", frozenset())] == 0.0  # joins the same read, starts no second one
    finally:
        release.set()


def test_served_model_versions_are_exported(ops_settings, make_version) -> None:
    holders = ModelHolders({"positive": "policy-positive", "negative": "policy-negative"})
    assert not [k for k in scrape(None, holders) if k[0] == "ctrlgpt_model_info"]
    holders.holder("positive").swap(make_version("v7", name="policy-positive").load())
    holders.holder("negative").swap(make_version("v8", name="policy-negative").load())
    info = {
        dict(labels)["model_name"]: dict(labels)["version"]
        for name, labels in scrape(None, holders)
        if name == "ctrlgpt_model_info"
    }
    assert info == {"policy-positive": "v7", "policy-negative": "v8"}


def test_a_fallback_version_is_exported_with_the_version_it_replaces(ops_settings, make_version) -> None:
    holders = ModelHolders({"positive": "policy-positive"})
    holders.holder("positive").swap(make_version("v7", name="policy-positive").load())
    assert not [k for k in scrape(None, holders) if k[0] == "ctrlgpt_model_fallback"]
    holders.holder("positive").swap(
        make_version("v6", name="policy-positive").load(), fallback=Fallback(refused_version="v7", reason="corrupted")
    )
    [labels] = [dict(labels) for name, labels in scrape(None, holders) if name == "ctrlgpt_model_fallback"]
    assert labels == {"model_name": "policy-positive", "version": "v6", "refused_version": "v7"}


def test_an_update_waiting_for_the_model_store_is_exported_with_how_long_it_waited(make_version) -> None:
    holders = ModelHolders({"positive": "policy-positive", "negative": "policy-negative"})
    holders.holder("positive").swap(make_version("v7", name="policy-positive").load())
    assert not [k for k in scrape(None, holders) if k[0] == "ctrlgpt_model_update_pending_seconds"]
    since = datetime.now(UTC) - timedelta(seconds=90)
    for target, version in (("positive", "v8"), ("negative", "v1")):  # the negative target serves nothing yet
        holders.holder(target).set_pending(
            PendingUpdate(version=version, reason="unavailable", since=since, attempts=4, next_attempt_at=since)
        )
    waited = {
        (dict(labels)["model_name"], dict(labels)["version"]): value
        for (name, labels), value in scrape(None, holders).items()
        if name == "ctrlgpt_model_update_pending_seconds"
    }
    assert set(waited) == {("policy-positive", "v8"), ("policy-negative", "v1")}
    assert all(90 <= seconds < 90 + 60 for seconds in waited.values())


def test_metrics_route_times_requests_by_route_template(api_settings) -> None:
    with TestClient(create_app(api_settings, follow_updates=False)) as client:
        assert client.get("/health").status_code == 200
        assert client.get("/no/such/path/123").status_code == 404
        response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    got = samples(response.text)
    assert got[("ctrlgpt_kafka_up", frozenset())] == 0.0  # this app does not monitor Kafka
    count = "ctrlgpt_http_request_duration_seconds_count"
    assert got[(count, frozenset({"method": "GET", "route": "/health", "status": "200"}.items()))] == 1.0
    assert got[(count, frozenset({"method": "GET", "route": "unmatched", "status": "404"}.items()))] == 1.0
    assert not [labels for name, labels in got if name == count and ("route", "/no/such/path/123") in labels]
