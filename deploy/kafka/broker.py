"""The local Kafka broker: one KRaft node (broker and controller) run from Maven's jars.

`deploy/kafka/pom.xml` names the broker; Maven resolves it into ~/.m2 once and the
classpath is cached in ~/.cache/ctrlgpt (deploy/bootstrap.sh writes the same file).
The storage is formatted once, with a cluster id kept next to it, so data survives
restarts.
"""

from __future__ import annotations

import base64
import subprocess
import uuid
from pathlib import Path

import structlog
from confluent_kafka.admin import AdminClient

from ctrlgpt.settings import REPO_ROOT, Settings
from deploy import maven, processes

log = structlog.get_logger()

NAME = "kafka"
POM = REPO_ROOT / "deploy" / "kafka" / "pom.xml"
CLASSPATH_CACHE = Path.home() / ".cache" / "ctrlgpt" / "kafka-classpath.txt"
READY_TIMEOUT_S = 120.0


def home(settings: Settings) -> Path:
    return settings.data_dir / "kafka"


def listener(bootstrap: str) -> tuple[str, int]:
    """Host and port the broker listens on: the first entry of the bootstrap list."""
    host, sep, port = bootstrap.split(",")[0].strip().rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"kafka_bootstrap must be HOST:PORT, got {bootstrap!r}")
    return host, int(port)


def server_properties(settings: Settings, log_dir: Path) -> str:
    host, port = listener(settings.kafka_bootstrap)
    controller = f"{host}:{settings.kafka_controller_port}"
    values = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{controller}",
        "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{controller}",
        "advertised.listeners": f"PLAINTEXT://{host}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(log_dir),
        "num.partitions": "1",
        # One node: the internal topics cannot have more replicas than that.
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        # A lone consumer gets its partitions at once instead of after 3 s.
        "group.initial.rebalance.delay.ms": "0",
        # Matches the producers' message.max.bytes (streams.bus): raw pages can be large.
        "message.max.bytes": str(8 * 1024 * 1024),
        "replica.fetch.max.bytes": str(8 * 1024 * 1024),
    }
    return "".join(f"{key}={value}\n" for key, value in values.items())


LOG4J_PROPERTIES = """\
# The broker's log4j (reload4j) configuration: everything to stdout, which
# deploy.processes appends to <data_dir>/logs/kafka.log.
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.org.apache.kafka.clients=WARN
log4j.logger.kafka.log.LogCleaner=INFO
"""


def new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding, never starting with '-'."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):  # Kafka's own rule: such ids read as CLI flags
            return cluster_id


def java_command(settings: Settings, jars: str, log4j: Path, main: str, *args: str) -> list[str]:
    return [
        str(settings.kafka_java_home / "bin" / "java"),
        "-Xms512m",
        "-Xmx1g",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-Djava.awt.headless=true",
        f"-Dlog4j.configuration=file:{log4j}",
        "-cp",
        jars,
        main,
        *args,
    ]


def classpath() -> str:
    """The broker's jars, resolved by Maven (offline when cached) and remembered."""
    return maven.classpath(POM, CLASSPATH_CACHE, "the Kafka broker")


def prepare(settings: Settings) -> list[str]:
    """Write the configuration, format the storage once; returns the broker's command line."""
    root = home(settings)
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    properties, log4j = root / "server.properties", root / "log4j.properties"
    properties.write_text(server_properties(settings, data))
    log4j.write_text(LOG4J_PROPERTIES)
    jars = classpath()
    if not (data / "meta.properties").exists():
        id_file = root / "cluster-id"
        if not id_file.exists():
            id_file.write_text(new_cluster_id())
        format_storage = java_command(
            settings,
            jars,
            log4j,
            "kafka.tools.StorageTool",
            "format",
            "-t",
            id_file.read_text().strip(),
            "-c",
            str(properties),
            "--ignore-formatted",
        )
        result = subprocess.run(format_storage, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"formatting the Kafka storage in {data} failed:\n{result.stdout}{result.stderr}")
        log.info("kafka.storage_formatted", log_dir=str(data))
    return java_command(settings, jars, log4j, "kafka.Kafka", str(properties))


def start(settings: Settings) -> int:
    pid = processes.running_pid(settings, NAME)
    if pid is not None:
        return pid
    return processes.start(settings, NAME, prepare(settings), cwd=home(settings))


def ready(settings: Settings) -> bool:
    # log_level 0: refused connections while the broker boots are expected, not worth a line each.
    AdminClient({"bootstrap.servers": settings.kafka_bootstrap, "log_level": 0}).list_topics(timeout=3)
    return True


def url(settings: Settings) -> str:
    return f"kafka://{settings.kafka_bootstrap}"


def address(settings: Settings) -> tuple[str, int]:
    return listener(settings.kafka_bootstrap)
