"""Every Kubernetes resource of a ctrlgpt cluster, as dicts built from the code's own registries.

Kafka's topics come from `streams.topics` (and the services' own registered topics), the consumer groups
KEDA watches from the settings that name them (`streams.groups` are their defaults), the workers from
`deploy.workers.WORKERS`, the pods' configuration from every field of `Settings`, the secrets' keys from
`ctrlgpt.secrets.Secrets`, Debezium's connector from `deploy.connect.worker.connector_config`. A new topic,
group, worker, setting or secret therefore shows up in the next render, and the test that compares the
committed manifests with a fresh render fails until they are rendered again.

Operators: Strimzi (Kafka, KafkaNodePool, KafkaTopic, KafkaConnect, KafkaConnector), ECK (Elasticsearch),
KEDA (ScaledObject). Versions: `STRIMZI_KAFKA_VERSION` is the default Kafka of the Strimzi release whose CRD
schemas are vendored in deploy/kubernetes/crds/ (see its README).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from consumers import doccano_labels
from ctrlgpt import worker_metrics
from ctrlgpt.secrets import Secrets
from ctrlgpt.settings import REPO_ROOT, Settings
from deploy.connect import worker as connect_worker
from deploy.postgres import server as postgres
from deploy.workers import WORKERS, settings_env
from streams import groups, topics
from streams.topics import Topic

Manifest = dict[str, Any]

STRIMZI_KAFKA_VERSION = "4.3.1"
KAFKA_BROKERS = 3  # the node pool; every topic is replicated on all three
MIN_INSYNC_REPLICAS = 2  # with acks=all a write survives one broker down, and waits when two are
KAFKA_CLUSTER = "ctrlgpt"
KAFKA_BOOTSTRAP = f"{KAFKA_CLUSTER}-kafka-bootstrap:9092"  # Strimzi's Service for the `plain` listener
ES_CLUSTER = "ctrlgpt"
ES_URL = f"http://{ES_CLUSTER}-es-http:9200"  # ECK's Service; TLS off inside the cluster, auth on
ES_PASSWORD_SECRET = f"{ES_CLUSTER}-es-elastic-user"  # ECK creates it; key `elastic`
CONNECT_CLUSTER = "ctrlgpt"
CONNECT_URL = f"http://{CONNECT_CLUSTER}-connect-api:8083"  # Strimzi's Service of Connect's REST API
POSTGRES_SERVICE = "ctrlgpt-postgres"
POSTGRES_IMAGE = "postgres:15"  # the major version deploy/postgres runs on one machine
DOCCANO_SERVICE = "ctrlgpt-doccano"
DOCCANO_PORT = 8000
API_SERVICE = "ctrlgpt-api"
SECRETS = "ctrlgpt-secrets"  # one key per field of ctrlgpt.secrets.Secrets, plus POSTGRES_SUPERUSER_KEY
POSTGRES_SUPERUSER_KEY = "postgres_password"
# Replicas on several hosts share versions through the object store, never a disk (models.store).
CLUSTER_MODEL_STORE = "s3://ctrlgpt-models/versions"
SETTINGS_CONFIGMAP = "ctrlgpt-settings"
DATA_DIR = Path("/data")
SECRETS_MOUNT = "/var/run/ctrlgpt-secrets"
CONNECT_POM = REPO_ROOT / "deploy" / "connect" / "pom.xml"


@dataclass(frozen=True)
class Resources:
    """What one pod asks for (requests) and may use at most (limits); docs/deploy.md lists them."""

    cpu: str
    memory: str
    cpu_limit: str
    memory_limit: str
    disk: str | None = None  # a PersistentVolumeClaim's size, where the component keeps state

    def spec(self) -> dict[str, dict[str, str]]:
        return {
            "requests": {"cpu": self.cpu, "memory": self.memory},
            "limits": {"cpu": self.cpu_limit, "memory": self.memory_limit},
        }


# Sized from the one-machine figures (docs/ingest.md, docs/api.md): the cleaner is CPU-bound (~10 ms a page),
# the crawler's Chromium and the models need memory, the trainer needs the most of both.
RESOURCES: dict[str, Resources] = {
    "kafka-broker": Resources("1", "4Gi", "2", "4Gi", disk="100Gi"),
    "elasticsearch": Resources("1", "4Gi", "2", "4Gi", disk="50Gi"),
    "postgres": Resources("250m", "512Mi", "1", "1Gi", disk="10Gi"),
    "doccano": Resources("250m", "512Mi", "1", "1Gi"),
    "connect": Resources("500m", "1Gi", "1", "2Gi"),
    "crawler": Resources("1", "2Gi", "2", "3Gi"),
    "cleaner": Resources("1", "1Gi", "1", "2Gi"),
    "index-sink": Resources("250m", "512Mi", "1", "1Gi"),
    "doccano-sink": Resources("250m", "512Mi", "1", "1Gi"),
    "label-bridge": Resources("250m", "512Mi", "1", "1Gi"),
    "api": Resources("2", "4Gi", "4", "6Gi"),
    "trainer": Resources("4", "16Gi", "8", "24Gi", disk="50Gi"),
}


@dataclass(frozen=True)
class Consumer:
    """A worker that consumes a topic as a group: what KEDA reads its lag from."""

    group: str
    topic: Topic


def consumers(settings: Settings) -> dict[str, Consumer]:
    """Each scalable worker's group and the topic whose lag it works off (the groups the services use)."""
    return {
        "crawler": Consumer(groups.CRAWLER, topics.CRAWL_REQUESTS),
        "cleaner": Consumer(settings.cleaner_app_id, topics.PAGES_RAW),
        "index-sink": Consumer(settings.es_sink_group, topics.PAGES_CLEAN),
        "doccano-sink": Consumer(groups.DOCCANO_SINK, topics.PAGES_CLEAN),
    }


def probe_groups(settings: Settings) -> dict[str, str]:
    """The group whose membership tells that a worker's pod is consuming (`ctrlgpt kube probe`)."""
    by_worker = {name: consumer.group for name, consumer in consumers(settings).items()}
    by_worker["label-bridge"] = settings.label_bridge_group
    by_worker["trainer"] = settings.trainer_group
    return by_worker


def partitions(topic: Topic, settings: Settings) -> int:
    return topic.partitions or settings.topic_partitions


def cluster_settings(settings: Settings) -> Settings:
    """The settings as the pods see them: the cluster's addresses instead of loopback, replication 3."""
    values = settings.model_dump()
    values.update(
        data_dir=DATA_DIR,
        kafka_bootstrap=KAFKA_BOOTSTRAP,
        topic_replication=KAFKA_BROKERS,
        es_url=ES_URL,
        doccano_url=f"http://{DOCCANO_SERVICE}:{DOCCANO_PORT}",
        connect_url=CONNECT_URL,
        postgres_port=5432,
        api_host="0.0.0.0",  # behind the Service; the pod network is not the host's
        objectstore_url=settings.kube_s3_endpoint,
        model_store=settings.model_store or CLUSTER_MODEL_STORE,
    )
    return Settings.model_construct(**values)


def all_topics(settings: Settings) -> list[Topic]:
    """Every topic with a fixed layout: the registry, Debezium's change topics, the label bridge's state."""
    return [
        *topics.ALL,
        *doccano_labels.change_topics(settings),
        doccano_labels.state_topic(settings.label_bridge_group),
    ]


def _meta(name: str, settings: Settings, **labels: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": settings.kube_namespace}
    if labels:
        meta["labels"] = labels
    return meta


def _app_labels(component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "ctrlgpt", "app.kubernetes.io/component": component}


def _pvc_spec(size: str, settings: Settings) -> dict[str, Any]:
    spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}
    if settings.kube_storage_class:
        spec["storageClassName"] = settings.kube_storage_class
    return spec


def _secret_env(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


# Namespace and settings


def namespace(settings: Settings) -> Manifest:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": settings.kube_namespace}}


def settings_configmap(settings: Settings) -> Manifest:
    """Every setting as its CTRLGPT_* variable, as `deploy.workers` passes them on one machine. The object
    store's keys and the announcements' signing key are fields of the secrets file, written from the Secret."""
    data = settings_env(cluster_settings(settings))
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(SETTINGS_CONFIGMAP, settings),
        "data": dict(sorted(data.items())),
    }


# Kafka (Strimzi)


def kafka_node_pool(settings: Settings) -> Manifest:
    resources = RESOURCES["kafka-broker"]
    volume: dict[str, Any] = {
        "id": 0,
        "type": "persistent-claim",
        "size": resources.disk,
        "deleteClaim": False,
        "kraftMetadata": "shared",
    }
    if settings.kube_storage_class:
        volume["class"] = settings.kube_storage_class
    return {
        "apiVersion": "kafka.strimzi.io/v1",
        "kind": "KafkaNodePool",
        "metadata": _meta("brokers", settings, **{"strimzi.io/cluster": KAFKA_CLUSTER}),
        "spec": {
            # Each node is a KRaft controller and a broker: three controllers keep a quorum with one away.
            "replicas": KAFKA_BROKERS,
            "roles": ["controller", "broker"],
            "storage": {"type": "jbod", "volumes": [volume]},
            "resources": resources.spec(),
        },
    }


def kafka_cluster(settings: Settings) -> Manifest:
    return {
        "apiVersion": "kafka.strimzi.io/v1",
        "kind": "Kafka",
        "metadata": _meta(KAFKA_CLUSTER, settings),
        "spec": {
            "kafka": {
                "version": STRIMZI_KAFKA_VERSION,
                "listeners": [{"name": "plain", "port": 9092, "type": "internal", "tls": False}],
                "config": {
                    "default.replication.factor": KAFKA_BROKERS,
                    "min.insync.replicas": MIN_INSYNC_REPLICAS,
                    "offsets.topic.replication.factor": KAFKA_BROKERS,
                    "transaction.state.log.replication.factor": KAFKA_BROKERS,
                    "transaction.state.log.min.isr": MIN_INSYNC_REPLICAS,
                },
            },
            # The topic operator turns the KafkaTopic resources below into topics.
            "entityOperator": {"topicOperator": {}},
        },
    }


def kafka_topic(topic: Topic, settings: Settings) -> Manifest:
    return {
        "apiVersion": "kafka.strimzi.io/v1",
        "kind": "KafkaTopic",
        # A resource name allows no "_" (Debezium's topics are named after tables); topicName keeps the exact one.
        "metadata": _meta(topic.name.replace("_", "-"), settings, **{"strimzi.io/cluster": KAFKA_CLUSTER}),
        "spec": {
            "topicName": topic.name,
            "partitions": partitions(topic, settings),
            "replicas": KAFKA_BROKERS,
            "config": {**topic.config(), "min.insync.replicas": str(MIN_INSYNC_REPLICAS)},
        },
    }


# Elasticsearch (ECK)


def elasticsearch(settings: Settings) -> Manifest:
    resources = RESOURCES["elasticsearch"]
    return {
        "apiVersion": "elasticsearch.k8s.elastic.co/v1",
        "kind": "Elasticsearch",
        "metadata": _meta(ES_CLUSTER, settings),
        "spec": {
            "version": settings.es_version,
            # Inside the cluster only; the elastic user's password (ECK's Secret) still guards it.
            "http": {"tls": {"selfSignedCertificate": {"disabled": True}}},
            "nodeSets": [
                {
                    "name": "default",
                    "count": 3,
                    # No vm.max_map_count change needed on the nodes.
                    "config": {"node.store.allow_mmap": False},
                    "podTemplate": {"spec": {"containers": [{"name": "elasticsearch", "resources": resources.spec()}]}},
                    "volumeClaimTemplates": [
                        {
                            "metadata": {"name": "elasticsearch-data"},
                            "spec": _pvc_spec(resources.disk or "", settings),
                        }
                    ],
                }
            ],
        },
    }


# The labeling side: PostgreSQL, doccano, Kafka Connect with Debezium


def _postgres_init_script() -> str:
    """Run once by the postgres image on an empty volume: doccano's role and database, Debezium's
    replication role, and the publication. FOR ALL TABLES, so that it covers doccano's tables, which its
    migrations create later; Debezium reads only `table.include.list` from it."""
    return f"""#!/bin/bash
set -euo pipefail
# Passwords and names as psql variables (:'x' a literal, :"x" an identifier), never spliced into SQL.
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" -v db="$DOCCANO_DATABASE" \\
  -v doccano_password="$DOCCANO_DB_PASSWORD" -v cdc_password="$CDC_DB_PASSWORD" <<'SQL'
CREATE ROLE :"db" LOGIN PASSWORD :'doccano_password';
CREATE DATABASE :"db" OWNER :"db";
CREATE ROLE {postgres.CDC_ROLE} LOGIN REPLICATION PASSWORD :'cdc_password';
GRANT CONNECT ON DATABASE :"db" TO {postgres.CDC_ROLE};
SQL
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$DOCCANO_DATABASE" -v db="$DOCCANO_DATABASE" <<'SQL'
GRANT USAGE ON SCHEMA public TO {postgres.CDC_ROLE};
ALTER DEFAULT PRIVILEGES FOR ROLE :"db" IN SCHEMA public GRANT SELECT ON TABLES TO {postgres.CDC_ROLE};
CREATE PUBLICATION {postgres.PUBLICATION} FOR ALL TABLES;
SQL
"""


def postgres_manifests(settings: Settings) -> list[Manifest]:
    resources = RESOURCES["postgres"]
    labels = _app_labels("postgres")
    init = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta("ctrlgpt-postgres-init", settings),
        "data": {"10-ctrlgpt.sh": _postgres_init_script()},
    }
    env = [
        _secret_env("POSTGRES_PASSWORD", SECRETS, POSTGRES_SUPERUSER_KEY),
        _secret_env("DOCCANO_DB_PASSWORD", SECRETS, "doccano_db_password"),
        _secret_env("CDC_DB_PASSWORD", SECRETS, "cdc_db_password"),
        {"name": "DOCCANO_DATABASE", "value": settings.doccano_database},
        {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"},
    ]
    ready = {"exec": {"command": ["pg_isready", "--username", "postgres"]}, "periodSeconds": 10}
    statefulset = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _meta(POSTGRES_SERVICE, settings, **labels),
        "spec": {
            "serviceName": POSTGRES_SERVICE,
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "postgres",
                            "image": POSTGRES_IMAGE,
                            # Debezium streams doccano's changes: logical decoding.
                            "args": ["-c", "wal_level=logical", "-c", "max_replication_slots=4"],
                            "env": env,
                            "ports": [{"name": "postgres", "containerPort": 5432}],
                            "resources": resources.spec(),
                            "readinessProbe": ready,
                            "livenessProbe": {**ready, "failureThreshold": 6},
                            "volumeMounts": [
                                {"name": "data", "mountPath": "/var/lib/postgresql/data"},
                                {"name": "init", "mountPath": "/docker-entrypoint-initdb.d"},
                            ],
                        }
                    ],
                    "volumes": [{"name": "init", "configMap": {"name": "ctrlgpt-postgres-init"}}],
                },
            },
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": _pvc_spec(resources.disk or "", settings)}],
        },
    }
    return [init, statefulset, _service(POSTGRES_SERVICE, labels, 5432, 5432, settings)]


def doccano_manifests(settings: Settings) -> list[Manifest]:
    labels = _app_labels("doccano")
    database_url = (
        f"postgres://{settings.doccano_database}:$(DOCCANO_DB_PASSWORD)@{POSTGRES_SERVICE}:5432/"
        f"{settings.doccano_database}?sslmode=disable"
    )
    http = {"httpGet": {"path": "/v1/health/", "port": DOCCANO_PORT}, "periodSeconds": 15}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(DOCCANO_SERVICE, settings, **labels),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "doccano",
                            "image": "doccano/doccano:1.8.4",  # deploy/doccano/requirements.in's version
                            "env": [
                                _secret_env("DOCCANO_DB_PASSWORD", SECRETS, "doccano_db_password"),
                                {"name": "DATABASE_URL", "value": database_url},
                                {"name": "ADMIN_USERNAME", "value": settings.doccano_username},
                                _secret_env("ADMIN_PASSWORD", SECRETS, "doccano_password"),
                                {"name": "ADMIN_EMAIL", "value": f"{settings.doccano_username}@ctrlgpt.invalid"},
                                {"name": "ALLOW_SIGNUP", "value": "False"},
                            ],
                            "ports": [{"name": "http", "containerPort": DOCCANO_PORT}],
                            "resources": RESOURCES["doccano"].spec(),
                            "readinessProbe": http,
                            "livenessProbe": {**http, "initialDelaySeconds": 60, "failureThreshold": 6},
                        }
                    ]
                },
            },
        },
    }
    return [deployment, _service(DOCCANO_SERVICE, labels, DOCCANO_PORT, DOCCANO_PORT, settings)]


def _pom_property(pom: Path, name: str) -> str:
    namespace_ = "{http://maven.apache.org/POM/4.0.0}"
    root = ET.parse(pom).getroot()
    node = root.find(f"{namespace_}properties/{namespace_}{name}")
    if node is None:
        node = root.find(f"properties/{name}")
    if node is None or not node.text:
        raise ValueError(f"{pom}: no property {name}")
    return node.text.strip()


def kafka_connect(settings: Settings) -> Manifest:
    group = settings.connect_group
    return {
        "apiVersion": "kafka.strimzi.io/v1",
        "kind": "KafkaConnect",
        "metadata": {
            **_meta(CONNECT_CLUSTER, settings),
            # The connector below is a KafkaConnector resource, not a REST call.
            "annotations": {"strimzi.io/use-connector-resources": "true"},
        },
        "spec": {
            "version": STRIMZI_KAFKA_VERSION,
            "replicas": 1,
            "bootstrapServers": KAFKA_BOOTSTRAP,
            "groupId": group,
            "configStorageTopic": f"{group}-configs",
            "offsetStorageTopic": f"{group}-offsets",
            "statusStorageTopic": f"{group}-status",
            "config": {
                "config.storage.replication.factor": KAFKA_BROKERS,
                "offset.storage.replication.factor": KAFKA_BROKERS,
                "status.storage.replication.factor": KAFKA_BROKERS,
                "key.converter": "org.apache.kafka.connect.json.JsonConverter",
                "value.converter": "org.apache.kafka.connect.json.JsonConverter",
                "key.converter.schemas.enable": False,
                "value.converter.schemas.enable": False,
                "scheduled.rebalance.max.delay.ms": int(settings.connect_rebalance_delay_s * 1000),
                # The replication role's password from the Secret, through the container's environment.
                "config.providers": "env",
                "config.providers.env.class": "org.apache.kafka.common.config.provider.EnvVarConfigProvider",
            },
            "build": {
                "output": {"type": "docker", "image": settings.kube_connect_image},
                "plugins": [
                    {
                        "name": "debezium-postgres",
                        "artifacts": [
                            {
                                "type": "maven",
                                "group": "io.debezium",
                                "artifact": "debezium-connector-postgres",
                                "version": _pom_property(CONNECT_POM, "debezium.version"),
                            }
                        ],
                    }
                ],
            },
            "resources": RESOURCES["connect"].spec(),
            "template": {"connectContainer": {"env": [_secret_env("CDC_DB_PASSWORD", SECRETS, "cdc_db_password")]}},
        },
    }


def kafka_connector(settings: Settings) -> Manifest:
    """Debezium's connector as on one machine (`deploy.connect.worker`), pointed at the cluster's PostgreSQL."""
    # Its file-provider password reference (one machine's) is replaced by the environment's below.
    # The cluster's settings: its change topics replicated as every other topic (3, min.insync 2).
    config = connect_worker.connector_config(cluster_settings(settings), secrets_file=Path(SECRETS_MOUNT))
    config.update(
        {
            "database.hostname": POSTGRES_SERVICE,
            "database.port": "5432",
            "database.password": "${env:CDC_DB_PASSWORD}",
        }
    )
    connector_class = config.pop("connector.class")
    tasks_max = int(config.pop("tasks.max"))
    return {
        "apiVersion": "kafka.strimzi.io/v1",
        "kind": "KafkaConnector",
        "metadata": _meta(connect_worker.CONNECTOR, settings, **{"strimzi.io/cluster": CONNECT_CLUSTER}),
        "spec": {"class": connector_class, "tasksMax": tasks_max, "config": config},
    }


# ctrlgpt's own pods


def _service(name: str, labels: dict[str, str], port: int, target: int, settings: Settings) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(name, settings, **labels),
        "spec": {"selector": labels, "ports": [{"name": "main", "port": port, "targetPort": target}]},
    }


def _ctrlgpt_pod(
    command: str,
    settings: Settings,
    *,
    probe: dict[str, Any],
    ports: list[dict[str, Any]] | None = None,
    extra_env: Iterable[dict[str, Any]] = (),
    resources: dict[str, Any],
    data_volume: dict[str, Any],
) -> dict[str, Any]:
    """A pod running `ctrlgpt COMMAND`: the settings from the ConfigMap, the secrets file written from the
    Secret by an init container (services read it from data_dir, and open it read-write)."""
    data_dir = str(DATA_DIR)
    env = [
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        _secret_env("ES_PASSWORD", ES_PASSWORD_SECRET, "elastic"),
        {"name": "CTRLGPT_ES_URL", "value": ES_URL.replace("http://", "http://elastic:$(ES_PASSWORD)@")},
        *extra_env,
    ]
    mounts = [{"name": "data", "mountPath": data_dir}]
    container: dict[str, Any] = {
        "name": command,
        "image": settings.kube_image,
        "command": ["ctrlgpt", command],
        "envFrom": [{"configMapRef": {"name": SETTINGS_CONFIGMAP}}],
        "env": env,
        "resources": resources,
        "readinessProbe": probe,
        "livenessProbe": {**probe, "initialDelaySeconds": 60, "failureThreshold": 6},
        "volumeMounts": mounts,
    }
    metrics_port = worker_metrics.port_of(settings, command)
    if metrics_port is not None:
        # The worker's own /metrics (ctrlgpt.worker_metrics), on the pod's address for the cluster's Prometheus.
        env.append({"name": "CTRLGPT_WORKER_METRICS_HOST", "value": "0.0.0.0"})
        ports = [*(ports or []), {"name": "metrics", "containerPort": metrics_port}]
    if ports:
        container["ports"] = ports
    return {
        "initContainers": [
            {
                "name": "secrets-file",
                "image": settings.kube_image,
                "command": ["ctrlgpt", "kube", "secrets-file", "--secrets-dir", SECRETS_MOUNT],
                "envFrom": [{"configMapRef": {"name": SETTINGS_CONFIGMAP}}],
                "volumeMounts": [*mounts, {"name": "secrets", "mountPath": SECRETS_MOUNT, "readOnly": True}],
            }
        ],
        "containers": [container],
        # The image's user (deploy/kubernetes/Dockerfile); fsGroup lets it write the trainer's volume.
        "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "fsGroup": 1000},
        "volumes": [
            {"name": "data", **data_volume},
            # Group-readable: the files are root's, their group the pod's fsGroup, which the services run in.
            {"name": "secrets", "secret": {"secretName": SECRETS, "defaultMode": 0o440}},
        ],
    }


def _group_probe(group: str) -> dict[str, Any]:
    """The workers serve no HTTP: their pod is healthy while it is a member of its consumer group
    (`ctrlgpt kube probe`, which asks Kafka's AdminClient)."""
    return {
        "exec": {"command": ["ctrlgpt", "kube", "probe", "--group", group]},
        "periodSeconds": 30,
        "timeoutSeconds": 20,
    }


def _deployment(name: str, labels: dict[str, str], replicas: int, pod: dict[str, Any], settings: Settings) -> Manifest:
    template: dict[str, Any] = {"labels": labels}
    metrics = [p for p in pod["containers"][0].get("ports", []) if p["name"] == "metrics"]
    if metrics:
        # The common scrape convention (Prometheus' kubernetes_sd relabelling, most charts read it).
        template["annotations"] = {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(metrics[0]["containerPort"]),
            "prometheus.io/path": "/metrics",
        }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(name, settings, **labels),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": template, "spec": pod},
        },
    }


def worker_names() -> list[str]:
    """The one-machine workers that run as their own Deployment here (the demo site is the demo's)."""
    return [name for name in WORKERS if name not in ("api", "trainer", "demo-site")]


def worker_deployment(name: str, settings: Settings) -> Manifest:
    pod = _ctrlgpt_pod(
        name,
        settings,
        probe=_group_probe(probe_groups(settings)[name]),
        resources=RESOURCES[name].spec(),
        data_volume={"emptyDir": {}},
    )
    if name == "crawler":
        # Chromium keeps its renderers' shared memory in /dev/shm, which a container gets only 64 MiB of.
        pod["volumes"].append({"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}})
        pod["containers"][0]["volumeMounts"].append({"name": "shm", "mountPath": "/dev/shm"})
    # KEDA sets the replicas of the scaled workers; the one-partition ones stay at one.
    return _deployment(f"ctrlgpt-{name}", _app_labels(name), 1, pod, settings)


def scaled_object(name: str, consumer: Consumer, settings: Settings) -> Manifest:
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": _meta(f"ctrlgpt-{name}", settings, **_app_labels(name)),
        "spec": {
            "scaleTargetRef": {"name": f"ctrlgpt-{name}"},
            "minReplicaCount": 1,
            # A replica past the partition count would own no partition.
            "maxReplicaCount": partitions(consumer.topic, settings),
            "triggers": [
                {
                    "type": "kafka",
                    "metadata": {
                        "bootstrapServers": KAFKA_BOOTSTRAP,
                        "consumerGroup": consumer.group,
                        "topic": consumer.topic.name,
                        "lagThreshold": str(settings.kube_lag_threshold),
                        "offsetResetPolicy": "earliest",
                    },
                }
            ],
        },
    }


def api_manifests(settings: Settings) -> list[Manifest]:
    labels = _app_labels("api")
    health = {"httpGet": {"path": "/health", "port": settings.api_port}, "periodSeconds": 10}
    pod = _ctrlgpt_pod(
        "api",
        settings,
        probe=health,
        ports=[{"name": "http", "containerPort": settings.api_port}],
        resources=RESOURCES["api"].spec(),
        data_volume={"emptyDir": {}},  # its own cache of model versions
    )
    return [
        _deployment(API_SERVICE, labels, settings.kube_api_replicas, pod, settings),
        _service(API_SERVICE, labels, 80, settings.api_port, settings),
    ]


def trainer_manifests(settings: Settings) -> list[Manifest]:
    labels = _app_labels("trainer")
    resources = RESOURCES["trainer"]
    spec = resources.spec()
    extra_env = []
    if settings.kube_gpu:
        spec["limits"]["nvidia.com/gpu"] = "1"
        extra_env.append({"name": "CTRLGPT_DEVICE", "value": "cuda"})
    claim = "ctrlgpt-trainer-data"
    pvc = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _meta(claim, settings, **labels),
        "spec": _pvc_spec(resources.disk or "", settings),
    }
    pod = _ctrlgpt_pod(
        "trainer",
        settings,
        probe=_group_probe(probe_groups(settings)["trainer"]),
        extra_env=extra_env,
        resources=spec,
        data_volume={"persistentVolumeClaim": {"claimName": claim}},
    )
    deployment = _deployment("ctrlgpt-trainer", labels, 1, pod, settings)
    # One trainer at a time: a new pod starts only after the old one let go of its volume and its run.
    deployment["spec"]["strategy"] = {"type": "Recreate"}
    return [pvc, deployment]


# The whole cluster, file by file


def secret_keys() -> list[str]:
    """The keys the Secret `SECRETS` must hold (docs/deploy.md creates it)."""
    return [*Secrets.model_fields, POSTGRES_SUPERUSER_KEY]


def render(settings: Settings) -> dict[str, list[Manifest]]:
    """File name -> the resources it holds, in the order they are applied."""
    scaled = consumers(settings)
    return {
        "namespace.yaml": [namespace(settings)],
        "settings.yaml": [settings_configmap(settings)],
        "kafka.yaml": [kafka_node_pool(settings), kafka_cluster(settings)],
        "topics.yaml": [kafka_topic(topic, settings) for topic in all_topics(settings)],
        "elasticsearch.yaml": [elasticsearch(settings)],
        "labeling.yaml": [
            *postgres_manifests(settings),
            *doccano_manifests(settings),
            kafka_connect(settings),
            kafka_connector(settings),
        ],
        "workers.yaml": [worker_deployment(name, settings) for name in worker_names()],
        "scaling.yaml": [scaled_object(name, consumer, settings) for name, consumer in scaled.items()],
        "api.yaml": api_manifests(settings),
        "trainer.yaml": trainer_manifests(settings),
    }


def kustomization(files: Iterable[str], settings: Settings) -> Manifest:
    return {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": settings.kube_namespace,
        "resources": list(files),
    }
