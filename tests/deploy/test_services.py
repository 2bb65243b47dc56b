"""The local stack answers for real; assumes `ctrlgpt services up` ran (it never stops them)."""

import subprocess

import httpx
import pytest
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from deploy import processes, services, supervisor
from deploy.doccano import server as doccano
from streams import topics

pytestmark = pytest.mark.integration


def test_kafka_lists_every_registry_topic(settings):
    listed = AdminClient({"bootstrap.servers": settings.kafka_bootstrap}).list_topics(timeout=10).topics
    missing = [topic.name for topic in topics.ALL if topic.name not in listed]
    assert missing == []


def test_model_updates_topic_is_compacted(settings):
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    resource = ConfigResource(ResourceType.TOPIC, topics.MODEL_UPDATES.name)
    config = admin.describe_configs([resource])[resource].result(timeout=10)
    assert config["cleanup.policy"].value == "compact"


def test_elasticsearch_cluster_is_healthy(settings):
    response = httpx.get(
        f"{settings.es_url}/_cluster/health", params={"wait_for_status": "yellow", "timeout": "30s"}, timeout=40
    )
    assert response.status_code == 200
    assert response.json()["status"] in ("green", "yellow")


def test_doccano_login_returns_a_token(settings):
    assert len(doccano.login(settings)) >= 20


def test_status_reports_every_service_up(settings):
    lines, all_up = services.status_lines(settings)
    assert all_up, lines
    assert [line.split()[:2] for line in lines] == [[service.name, "up"] for service in services.of(settings)]


def _pids(settings) -> dict[str, int | None]:
    pids = {service.name: processes.running_pid(settings, service.name) for service in services.of(settings)}
    return {**pids, "supervisord": supervisor.rpc(settings).supervisor.getPID()}


def test_up_again_changes_nothing(settings):
    before = _pids(settings)
    result = subprocess.run(
        processes.ctrlgpt_command("services", "up"), capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    after = _pids(settings)
    assert after == before
    assert None not in after.values()
