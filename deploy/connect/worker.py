"""The local Kafka Connect worker, with Debezium's PostgreSQL connector on doccano's tables.

`deploy/connect/pom.xml` names Connect (the Kafka release of the broker) and
`io.debezium:debezium-connector-postgres`; Maven resolves them into ~/.m2 once and the
classpath is cached in ~/.cache/ctrlgpt (deploy/bootstrap.sh writes the same file).

Distributed mode, one worker: the connector's configuration, its source offsets (the
PostgreSQL LSN it read up to) and its status live in three compacted topics on our
Kafka, so a worker that restarts, or a second one on another machine later, carries on
where the last one stopped; the data directory holds nothing Connect needs. The REST
API listens on 127.0.0.1 only. `ready` registers the connector when it is missing or
its configuration changed (PUT is idempotent), so `ctrlgpt services up` provisions it.
The replication role's password reaches the connector through Connect's file config
provider, never through the REST API or the config topic.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import structlog

from ctrlgpt import secrets
from ctrlgpt.retry import retrying
from ctrlgpt.settings import REPO_ROOT, Settings
from deploy import maven, processes
from deploy.kafka import broker as kafka
from deploy.postgres import server as postgres

log = structlog.get_logger()

NAME = "connect"
CONNECTOR = "ctrlgpt-doccano-labels"
POM = REPO_ROOT / "deploy" / "connect" / "pom.xml"
CLASSPATH_CACHE = Path.home() / ".cache" / "ctrlgpt" / "connect-classpath.txt"
READY_TIMEOUT_S = 180.0
SLOT = "ctrlgpt_labels"

LOG4J_PROPERTIES = """\
# Kafka Connect's log4j (reload4j) configuration: everything to stdout, which
# deploy.processes appends to <data_dir>/logs/connect.log.
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.org.apache.kafka.clients=WARN
log4j.logger.org.reflections=ERROR
"""


def home(settings: Settings) -> Path:
    return settings.data_dir / "connect"


def rest_address(connect_url: str) -> tuple[str, int]:
    parts = urlsplit(connect_url)
    if not parts.hostname or parts.port is None:
        raise ValueError(f"connect_url must be http://HOST:PORT, got {connect_url!r}")
    return parts.hostname, parts.port


def worker_properties(settings: Settings) -> str:
    host, port = rest_address(settings.connect_url)
    group = settings.connect_group
    values = {
        "bootstrap.servers": settings.kafka_bootstrap,
        "group.id": group,
        "config.storage.topic": f"{group}-configs",
        "offset.storage.topic": f"{group}-offsets",
        "status.storage.topic": f"{group}-status",
        # Its internal topics replicated as ctrlgpt's own (one broker: one replica).
        "config.storage.replication.factor": str(settings.replication_factor),
        "offset.storage.replication.factor": str(settings.replication_factor),
        "status.storage.replication.factor": str(settings.replication_factor),
        "offset.storage.partitions": "1",
        "status.storage.partitions": "1",
        "listeners": f"http://{host}:{port}",
        "rest.advertised.host.name": host,
        "rest.advertised.port": str(port),
        # Change records are plain JSON (no schema beside every record): the label bridge reads them.
        "key.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "key.converter.schemas.enable": "false",
        "value.converter.schemas.enable": "false",
        "offset.flush.interval.ms": "5000",
        # A worker whose broker was away past its poll timeout leaves the group and rejoins as a new
        # member; by default its connector is held for the old member for 5 minutes (seen: labels
        # stalled that long after a one-minute broker outage). A short delay reassigns it at once.
        "scheduled.rebalance.max.delay.ms": str(int(settings.connect_rebalance_delay_s * 1000)),
        # Debezium's records as every ctrlgpt producer writes (streams.bus): on all in-sync replicas, once.
        "producer.acks": "all",
        "producer.enable.idempotence": "true",
        "config.providers": "file",
        "config.providers.file.class": "org.apache.kafka.common.config.provider.FileConfigProvider",
    }
    return "".join(f"{key}={value}\n" for key, value in values.items())


def connector_config(settings: Settings, secrets_file: Path) -> dict[str, str]:
    """Debezium's PostgreSQL connector on the tables of `deploy.postgres.CDC_TABLES`, via pgoutput."""
    return {
        "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
        "tasks.max": "1",
        "plugin.name": "pgoutput",
        "database.hostname": postgres.HOST,
        "database.port": str(settings.postgres_port),
        "database.user": postgres.CDC_ROLE,
        "database.password": f"${{file:{secrets_file}:password}}",
        "database.dbname": settings.doccano_database,
        "topic.prefix": settings.cdc_topic_prefix,
        # deploy.postgres made the publication (Debezium's role does not own the tables).
        "publication.name": postgres.PUBLICATION,
        "publication.autocreate.mode": "disabled",
        "slot.name": SLOT,
        "table.include.list": ",".join(f"public.{table}" for table in postgres.CDC_TABLES),
        # Existing annotations are read once when the connector first starts.
        "snapshot.mode": "initial",
        # A deletion is one record with its row in `before`; no tombstone after it.
        "tombstones.on.delete": "false",
        # Heartbeats let the slot's position move while only other tables change, so
        # PostgreSQL can drop old WAL instead of keeping it for weeks.
        "heartbeat.interval.ms": "60000",
        "topic.creation.default.replication.factor": str(settings.replication_factor),
        "topic.creation.default.min.insync.replicas": str(settings.min_insync_replicas),
        "topic.creation.default.partitions": "1",
        "errors.retry.timeout": "-1",  # PostgreSQL away: retry, never fail the task
    }


def classpath() -> str:
    """Connect's and Debezium's jars, resolved by Maven (offline when cached) and remembered."""
    return maven.classpath(POM, CLASSPATH_CACHE, "Kafka Connect and Debezium")


def password_file(settings: Settings) -> Path:
    return home(settings) / "postgres-password.properties"


def _write_password_file(settings: Settings) -> None:
    """The replication role's password as a properties file, owner-only, for the file config provider."""
    path = password_file(settings)
    password = secrets.load_or_create(settings.secrets_file).cdc_db_password
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as handle:
        handle.write(f"password={password}\n")


def prepare(settings: Settings) -> list[str]:
    """Write the worker's configuration; returns its command line."""
    root = home(settings)
    root.mkdir(parents=True, exist_ok=True)
    properties, log4j = root / "worker.properties", root / "log4j.properties"
    _write_password_file(settings)
    properties.write_text(worker_properties(settings))
    log4j.write_text(LOG4J_PROPERTIES)
    return [
        str(settings.kafka_java_home / "bin" / "java"),
        "-Xms128m",
        "-Xmx512m",
        "-XX:+UseG1GC",
        "-Djava.awt.headless=true",
        f"-Dlog4j.configuration=file:{log4j}",
        "-cp",
        classpath(),
        "org.apache.kafka.connect.cli.ConnectDistributed",
        str(properties),
    ]


def start(settings: Settings) -> int:
    pid = processes.running_pid(settings, NAME)
    if pid is not None:
        return pid
    argv = prepare(settings)
    # The worker gives up when Kafka does not answer at start: wait for the broker first.
    for attempt in retrying(Exception, what="kafka for connect", give_up_after_s=kafka.READY_TIMEOUT_S):
        with attempt:
            kafka.ready(settings)
    return processes.start(settings, NAME, argv, cwd=home(settings))


def ensure_connector(settings: Settings, client: httpx.Client) -> None:
    """Register the connector, or update its configuration, unless it is already as wanted."""
    wanted = connector_config(settings, password_file(settings))
    current = client.get(f"/connectors/{CONNECTOR}/config")
    if current.status_code == 200 and {k: v for k, v in current.json().items() if k != "name"} == wanted:
        return
    if current.status_code not in (200, 404):
        current.raise_for_status()
    response = client.put(f"/connectors/{CONNECTOR}/config", json=wanted)
    response.raise_for_status()
    log.info("connect.connector_registered", connector=CONNECTOR, created=response.status_code == 201)


def ready(settings: Settings) -> bool:
    """The worker answers, the connector is registered, and it and its task run."""
    with httpx.Client(base_url=settings.connect_url, timeout=10) as client:
        ensure_connector(settings, client)
        status = client.get(f"/connectors/{CONNECTOR}/status")
        status.raise_for_status()
        body = status.json()
        states = [body["connector"]["state"], *(task["state"] for task in body["tasks"])]
        if "FAILED" in states:
            # A task that failed (PostgreSQL away longer than its retries) stays failed until restarted.
            log.warning("connect.restarting_failed", connector=CONNECTOR, status=body)
            client.post(f"/connectors/{CONNECTOR}/restart", params={"includeTasks": "true", "onlyFailed": "true"})
    if len(states) < 2 or any(state != "RUNNING" for state in states):
        raise RuntimeError(f"connector {CONNECTOR} is not running yet: {states}")
    return True


def url(settings: Settings) -> str:
    return settings.connect_url


def address(settings: Settings) -> tuple[str, int]:
    return rest_address(settings.connect_url)
