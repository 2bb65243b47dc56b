"""The local Kafka brokers: one KRaft cluster of `kafka_brokers` nodes run from Maven's jars.

Each node is broker and controller at once; the controller quorum is all of them, so a
cluster of three keeps working with one node down. Node n (from 0) listens on the n-th
address of `kafka_bootstrap` and on `kafka_controller_port + 2n`, is supervised as its own
program (`kafka`, then `kafka-2`, `kafka-3`, ...) and keeps its log under its own directory
of the data dir. `deploy/kafka/pom.xml` names the broker; Maven resolves it into ~/.m2 once and the
classpath is cached in ~/.cache/ctrlgpt (deploy/bootstrap.sh writes the same file).
The storage is formatted once, with a cluster id shared by the nodes kept next to node 0's,
so data survives restarts.
"""

from __future__ import annotations

import base64
import subprocess
import uuid
from dataclasses import dataclass
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
# A node's controller port is kafka_controller_port + CONTROLLER_PORT_STEP * n: room between them for the
# brokers' own ports when those are numbered alike (9092, 9094, 9096 beside 9093, 9095, 9097).
CONTROLLER_PORT_STEP = 2


@dataclass(frozen=True)
class Node:
    """One broker of the local cluster."""

    index: int  # from 0, in the order of kafka_bootstrap
    host: str
    port: int
    controller_port: int

    @property
    def node_id(self) -> int:
        return self.index + 1

    @property
    def name(self) -> str:
        """Its supervised program; the first keeps the one-broker deployment's name, data and log."""
        return NAME if self.index == 0 else f"{NAME}-{self.node_id}"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def controller(self) -> str:
        return f"{self.host}:{self.controller_port}"


def listener(address: str) -> tuple[str, int]:
    """Host and port of one `HOST:PORT` entry of the bootstrap list."""
    host, sep, port = address.strip().rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"kafka_bootstrap must list HOST:PORT entries, got {address!r}")
    return host, int(port)


def nodes(settings: Settings) -> list[Node]:
    """The local cluster: one node per `kafka_bootstrap` entry, `kafka_brokers` of them."""
    addresses = [entry for entry in settings.kafka_bootstrap.split(",") if entry.strip()]
    if len(addresses) != settings.kafka_brokers:
        raise ValueError(
            f"kafka_brokers={settings.kafka_brokers} needs kafka_bootstrap to list that many local brokers, "
            f"got {settings.kafka_bootstrap!r} (for example 127.0.0.1:9092,127.0.0.1:9094,127.0.0.1:9096 for three)"
        )
    cluster = [
        Node(index, *listener(address), settings.kafka_controller_port + CONTROLLER_PORT_STEP * index)
        for index, address in enumerate(addresses)
    ]
    ports = [(node.host, port) for node in cluster for port in (node.port, node.controller_port)]
    if len(set(ports)) != len(ports):
        raise ValueError(f"the local Kafka nodes' ports collide: {ports} (kafka_bootstrap, kafka_controller_port)")
    return cluster


def node(settings: Settings, index: int) -> Node:
    return nodes(settings)[index]


def home(settings: Settings, index: int = 0) -> Path:
    return settings.data_dir / node(settings, index).name


def server_properties(settings: Settings, index: int, log_dir: Path) -> str:
    cluster = nodes(settings)
    this = cluster[index]
    replicas, min_insync = str(settings.replication_factor), str(settings.min_insync_replicas)
    values = {
        "process.roles": "broker,controller",
        "node.id": str(this.node_id),
        "controller.quorum.voters": ",".join(f"{n.node_id}@{n.controller}" for n in cluster),
        "listeners": f"PLAINTEXT://{this.address},CONTROLLER://{this.controller}",
        "advertised.listeners": f"PLAINTEXT://{this.address}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(log_dir),
        "num.partitions": "1",
        # Kafka's internal topics (consumer offsets, transactions) and topics that others create
        # (faust's, Kafka Connect's) replicated as ctrlgpt's own: streams.bus.ensure_topics.
        "default.replication.factor": replicas,
        "min.insync.replicas": min_insync,
        "offsets.topic.replication.factor": replicas,
        "transaction.state.log.replication.factor": replicas,
        "transaction.state.log.min.isr": min_insync,
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


def prepare(settings: Settings, index: int = 0) -> list[str]:
    """Write node `index`'s configuration, format its storage once; returns its command line."""
    root = home(settings, index)
    data = root / "data"
    voters = ",".join(f"{n.node_id}@{n.controller}" for n in nodes(settings))
    # The quorum is fixed when the storage is formatted: another cluster size needs another data dir.
    quorum_file = root / "quorum"
    formatted = (data / "meta.properties").exists()
    if formatted:
        formatted_for = (
            quorum_file.read_text().strip() if quorum_file.exists() else "1@" + nodes(settings)[0].controller
        )
        if formatted_for != voters:
            raise RuntimeError(
                f"{data} was formatted for the controller quorum {formatted_for}, not {voters}: "
                "a local cluster of another size (kafka_brokers) or other ports needs a new data_dir"
            )
    data.mkdir(parents=True, exist_ok=True)
    properties, log4j = root / "server.properties", root / "log4j.properties"
    properties.write_text(server_properties(settings, index, data))
    log4j.write_text(LOG4J_PROPERTIES)
    jars = classpath()
    if not formatted:
        id_file = home(settings, 0) / "cluster-id"
        id_file.parent.mkdir(parents=True, exist_ok=True)
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
        quorum_file.write_text(voters + "\n")
        log.info("kafka.storage_formatted", log_dir=str(data), node_id=index + 1)
    return java_command(settings, jars, log4j, "kafka.Kafka", str(properties))


def start(settings: Settings, index: int = 0) -> int:
    name = node(settings, index).name
    pid = processes.running_pid(settings, name)
    if pid is not None:
        return pid
    return processes.start(settings, name, prepare(settings, index), cwd=home(settings, index))


def ready(settings: Settings, index: int = 0) -> bool:
    """This node answers metadata requests itself (not another node of the bootstrap list)."""
    # log_level 0: refused connections while the broker boots are expected, not worth a line each.
    admin = AdminClient({"bootstrap.servers": node(settings, index).address, "log_level": 0})
    admin.list_topics(timeout=3)
    return True


def url(settings: Settings, index: int = 0) -> str:
    return f"kafka://{node(settings, index).address}"


def address(settings: Settings, index: int = 0) -> tuple[str, int]:
    this = node(settings, index)
    return this.host, this.port
