"""deploy/kubernetes/: the committed manifests are a fresh render, follow the registries, and validate offline.

Kubernetes' own kinds against the API schemas of `kubernetes-validate` (strict: an unknown field fails);
Strimzi's, ECK's and KEDA's against the CRD schemas vendored in deploy/kubernetes/crds/, made strict the way
the API server's field validation is (an object's unknown field fails unless the schema keeps unknown fields).
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from ctrlgpt import worker_metrics
from ctrlgpt.settings import Settings
from deploy.kubernetes import cli, render
from deploy.workers import WORKERS
from streams import topics

KUBERNETES_VERSION = "1.32"
CRDS = Path(render.__file__).parent / "crds"
OPERATOR_GROUPS = ("kafka.strimzi.io", "elasticsearch.k8s.elastic.co", "keda.sh")


def defaults(**overrides: object) -> Settings:
    return Settings.model_construct(**overrides)


def manifests(settings: Settings) -> list[dict[str, Any]]:
    return [doc for docs in render.render(settings).values() for doc in docs]


def by_kind(settings: Settings, kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in manifests(settings) if doc["kind"] == kind}


def _strict(schema: Any) -> Any:
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    strict = {key: _strict(value) for key, value in schema.items()}
    # Only whole object schemas: a oneOf branch that lists one property constrains, it does not close.
    if (
        strict.get("type") == "object"
        and "properties" in strict
        and "additionalProperties" not in strict
        and not strict.get("x-kubernetes-preserve-unknown-fields")
    ):
        strict["additionalProperties"] = False
    return strict


@cache
def crd_validator(api_version: str, kind: str) -> jsonschema.Draft4Validator:
    group, version = api_version.split("/")
    path = CRDS / f"{group}_{version}_{kind.lower()}.json"
    if not path.exists():
        raise AssertionError(f"no vendored CRD schema for {api_version} {kind} ({path.name})")
    schema = json.loads(path.read_text())["openAPIV3Schema"]
    # metadata is the API server's, not the CRD's: checked here only as an object
    schema = _strict(schema)
    schema["properties"]["metadata"] = {"type": "object"}
    return jsonschema.Draft4Validator(schema)


def validate(doc: dict[str, Any]) -> None:
    """Raises when `doc` does not validate against its kind's schema."""
    if doc["apiVersion"].split("/")[0] in OPERATOR_GROUPS:
        crd_validator(doc["apiVersion"], doc["kind"]).validate(doc)
    else:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_committed_manifests_are_a_fresh_render() -> None:
    fresh = cli.rendered_files(defaults())
    committed = {path.name: path.read_text() for path in cli.MANIFESTS_DIR.glob("*.yaml")}
    assert sorted(committed) == sorted(fresh), "run: .venv/bin/ctrlgpt kube render --defaults"
    for name, text in fresh.items():
        assert committed[name] == text, f"{name} differs from a fresh render: .venv/bin/ctrlgpt kube render --defaults"


def test_kustomization_lists_every_manifest_file() -> None:
    kustomization = yaml.safe_load((cli.MANIFESTS_DIR / "kustomization.yaml").read_text())
    files = {path.name for path in cli.MANIFESTS_DIR.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(files)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (with its kustomize) is not installed")
def test_kustomize_renders_the_manifests_once() -> None:
    """What `kubectl apply -k` would send: every resource, each in the namespace."""
    built = subprocess.run(
        ["kubectl", "kustomize", str(cli.MANIFESTS_DIR)], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    docs = [doc for doc in yaml.safe_load_all(built) if doc]
    assert len(docs) == len(manifests(defaults()))
    namespace = defaults().kube_namespace
    assert all(doc["metadata"].get("namespace", namespace) == namespace for doc in docs)


@pytest.mark.parametrize("gpu", [False, True])
def test_every_rendered_manifest_validates(gpu: bool) -> None:
    docs = [doc for path in sorted(cli.MANIFESTS_DIR.glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text())]
    docs = [doc for doc in docs if doc["kind"] != "Kustomization"]
    if gpu:
        docs = manifests(defaults(kube_gpu=True, kube_storage_class="fast-ssd"))
    kinds = {doc["kind"] for doc in docs}
    assert {"Kafka", "KafkaNodePool", "KafkaTopic", "KafkaConnect", "KafkaConnector", "Elasticsearch"} <= kinds
    assert {"ScaledObject", "Deployment", "StatefulSet", "Service", "ConfigMap", "PersistentVolumeClaim"} <= kinds
    for doc in docs:
        validate(doc)


# What the API server accepts as a resource's name (a DNS subdomain, RFC 1123).
RESOURCE_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def test_every_resource_has_a_name_the_api_server_accepts_and_its_own() -> None:
    docs = manifests(defaults())
    for doc in docs:
        name = doc["metadata"]["name"]
        assert RESOURCE_NAME.fullmatch(name) and len(name) <= 253, name
    keys = [(doc["kind"], doc["metadata"]["name"]) for doc in docs]
    assert len(keys) == len(set(keys))


def _deployment() -> dict[str, Any]:
    return copy.deepcopy(by_kind(defaults(), "Deployment")["ctrlgpt-cleaner"])


def _topic() -> dict[str, Any]:
    return copy.deepcopy(by_kind(defaults(), "KafkaTopic")[topics.PAGES_RAW.name])


def _broken(doc: dict[str, Any], path: list[Any], value: object) -> dict[str, Any]:
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return doc


@pytest.mark.parametrize(
    "broken",
    [
        _broken(_deployment(), ["spec", "replicas"], "three"),
        _broken(_deployment(), ["spec", "template", "spec", "containers", 0, "imagePullPolcy"], "Always"),
        _broken(_topic(), ["spec", "partitions"], "three"),
        _broken(_topic(), ["spec", "partition"], 3),
        _broken(copy.deepcopy(by_kind(defaults(), "ScaledObject")["ctrlgpt-cleaner"]), ["spec", "triggers"], "kafka"),
        _broken(copy.deepcopy(by_kind(defaults(), "KafkaNodePool")["brokers"]), ["spec", "roles"], ["leader"]),
    ],
    ids=["replicas-string", "unknown-container-field", "partitions-string", "unknown-topic-field", "triggers", "role"],
)
def test_a_broken_manifest_is_rejected(broken: dict[str, Any]) -> None:
    with pytest.raises(jsonschema.ValidationError):
        validate(broken)


def test_every_registry_topic_is_a_kafka_topic_with_its_layout() -> None:
    settings = defaults()
    rendered = by_kind(settings, "KafkaTopic")
    by_topic = {doc["spec"]["topicName"]: doc for doc in rendered.values()}
    for topic in render.all_topics(settings):
        spec = by_topic[topic.name]["spec"]
        assert spec["topicName"] == topic.name
        assert spec["partitions"] == (topic.partitions or settings.topic_partitions)
        assert spec["replicas"] == 3
        assert spec["config"]["retention.ms"] == str(topic.retention_ms)
        assert spec["config"]["cleanup.policy"] == topic.cleanup_policy
        assert spec["config"]["min.insync.replicas"] == "2"
    assert {topic.name for topic in topics.ALL} <= set(by_topic)
    for stage in topics.STAGES:
        assert topics.dead_letter_topic(stage).name in by_topic
    assert by_topic[topics.MODEL_UPDATES.name]["spec"]["config"]["cleanup.policy"] == "compact"


def test_kafka_is_three_kraft_nodes_with_replication_three() -> None:
    settings = defaults()
    pool = by_kind(settings, "KafkaNodePool")["brokers"]
    assert pool["spec"]["replicas"] == 3
    assert sorted(pool["spec"]["roles"]) == ["broker", "controller"]
    config = by_kind(settings, "Kafka")["ctrlgpt"]["spec"]["kafka"]["config"]
    assert config["default.replication.factor"] == 3
    assert config["min.insync.replicas"] == 2


def test_every_setting_reaches_the_pods() -> None:
    settings = defaults()
    data = by_kind(settings, "ConfigMap")[render.SETTINGS_CONFIGMAP]["data"]
    for name in Settings.model_fields:
        if getattr(settings, name) is not None:
            assert f"CTRLGPT_{name.upper()}" in data, name
    assert data["CTRLGPT_KAFKA_BOOTSTRAP"] == render.KAFKA_BOOTSTRAP
    assert data["CTRLGPT_TOPIC_REPLICATION"] == "3"
    assert data["CTRLGPT_OBJECTSTORE_URL"] == settings.kube_s3_endpoint
    assert data["CTRLGPT_MODEL_STORE"].startswith("s3://")  # replicas on several hosts share one store


def test_every_worker_runs_as_a_deployment() -> None:
    deployments = by_kind(defaults(), "Deployment")
    for worker in WORKERS:
        if worker == "demo-site":
            continue
        name = render.API_SERVICE if worker == "api" else f"ctrlgpt-{worker}"
        container = deployments[name]["spec"]["template"]["spec"]["containers"][0]
        assert container["command"] == ["ctrlgpt", worker]
        assert container["readinessProbe"] and container["livenessProbe"]
        assert container["resources"]["requests"] and container["resources"]["limits"]
    assert deployments[render.API_SERVICE]["spec"]["replicas"] == defaults().kube_api_replicas


def test_each_worker_exposes_its_own_metrics_to_the_clusters_prometheus() -> None:
    settings = defaults()
    deployments = by_kind(settings, "Deployment")
    for worker in worker_metrics.PORT_OFFSETS:
        template = deployments[f"ctrlgpt-{worker}"]["spec"]["template"]
        container = template["spec"]["containers"][0]
        port = worker_metrics.port_of(settings, worker)
        assert {"name": "metrics", "containerPort": port} in container["ports"]
        assert {"name": "CTRLGPT_WORKER_METRICS_HOST", "value": "0.0.0.0"} in container["env"]
        assert template["metadata"]["annotations"]["prometheus.io/port"] == str(port)
    api = deployments[render.API_SERVICE]["spec"]["template"]
    assert "annotations" not in api["metadata"]  # the API's /metrics is on its own port, scraped through its Service


def test_scaled_objects_follow_the_groups_and_stop_at_the_partition_count() -> None:
    settings = defaults(topic_partitions=6, es_sink_group="ctrlgpt-index-2")
    scaled = by_kind(settings, "ScaledObject")
    assert set(scaled) == {f"ctrlgpt-{name}" for name in render.consumers(settings)}
    for name, consumer in render.consumers(settings).items():
        spec = scaled[f"ctrlgpt-{name}"]["spec"]
        trigger = spec["triggers"][0]["metadata"]
        assert trigger["consumerGroup"] == consumer.group
        assert trigger["topic"] == consumer.topic.name
        assert spec["maxReplicaCount"] == 6
    assert scaled["ctrlgpt-index-sink"]["spec"]["triggers"][0]["metadata"]["consumerGroup"] == "ctrlgpt-index-2"


def test_the_trainer_asks_for_a_gpu_only_when_configured() -> None:
    def trainer(settings: Settings) -> dict[str, Any]:
        return by_kind(settings, "Deployment")["ctrlgpt-trainer"]["spec"]["template"]["spec"]["containers"][0]

    assert "nvidia.com/gpu" not in trainer(defaults())["resources"]["limits"]
    with_gpu = trainer(defaults(kube_gpu=True))
    assert with_gpu["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert {"name": "CTRLGPT_DEVICE", "value": "cuda"} in with_gpu["env"]


def test_secrets_come_from_secrets_by_name_only() -> None:
    docs = manifests(defaults())
    assert not [doc for doc in docs if doc["kind"] == "Secret"]
    for doc in docs:
        for reference in _secret_key_refs(doc):
            if reference["name"] == render.SECRETS:
                assert reference["key"] in render.secret_keys(), reference
        for container in _containers(doc):
            if container["name"] == "secrets-file":  # the services' secrets file: the whole Secret, mounted
                volumes = doc["spec"]["template"]["spec"]["volumes"]
                assert {"name": "secrets", "secret": {"secretName": render.SECRETS, "defaultMode": 0o440}} in volumes
        for container in _containers(doc):
            for variable in container.get("env", []):
                name = variable["name"]
                if "PASSWORD" in name or "SECRET" in name or "KEY" in name:
                    assert "valueFrom" in variable, f"{doc['metadata']['name']}: {name} has a literal value"


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc.get("spec", {}).get("template", {}).get("spec", {})
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def _secret_key_refs(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, dict):
        found = [node["secretKeyRef"]] if "secretKeyRef" in node else []
        return found + [ref for value in node.values() for ref in _secret_key_refs(value)]
    if isinstance(node, list):
        return [ref for item in node for ref in _secret_key_refs(item)]
    return []


def test_docs_list_what_each_component_asks_for() -> None:
    """docs/deploy.md's table is what the pods ask for: a change of RESOURCES without the docs fails."""
    docs = (Path(render.__file__).parents[2] / "docs" / "deploy.md").read_text()
    for name, asked in render.RESOURCES.items():
        row = f"| {name} | {asked.cpu} / {asked.cpu_limit} | {asked.memory} / {asked.memory_limit} | {asked.disk or '-'} |"
        assert row in docs, row


def test_debeziums_change_topics_are_replicated_like_every_other_topic() -> None:
    [connector] = by_kind(defaults(), "KafkaConnector").values()
    config = connector["spec"]["config"]
    assert config["topic.creation.default.replication.factor"] == str(render.KAFKA_BROKERS)
    assert config["topic.creation.default.min.insync.replicas"] == str(render.MIN_INSYNC_REPLICAS)
