import base64

import pytest

from ctrlgpt.settings import Settings
from deploy.kafka import broker


def properties(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))


def test_listener_is_host_and_port():
    assert broker.listener("127.0.0.1:9092") == ("127.0.0.1", 9092)
    assert broker.listener(" localhost:19092") == ("localhost", 19092)


@pytest.mark.parametrize("bootstrap", ["127.0.0.1", ":9092", "host:port"])
def test_listener_refuses_what_is_not_host_port(bootstrap):
    with pytest.raises(ValueError, match="HOST:PORT"):
        broker.listener(bootstrap)


def test_server_properties_make_one_combined_kraft_node(tmp_path):
    settings = Settings(data_dir=tmp_path, kafka_bootstrap="127.0.0.1:19092", kafka_controller_port=19093)
    props = properties(broker.server_properties(settings, 0, tmp_path / "data"))
    assert props["process.roles"] == "broker,controller"
    assert props["node.id"] == "1"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert props["log.dirs"] == str(tmp_path / "data")
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["transaction.state.log.replication.factor"] == "1"
    assert props["transaction.state.log.min.isr"] == "1"
    assert props["min.insync.replicas"] == "1"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert broker.home(settings) == tmp_path / "kafka"


THREE = "127.0.0.1:19092,127.0.0.1:19094,127.0.0.1:19096"


def test_three_brokers_are_three_nodes_of_one_quorum_on_their_own_ports(tmp_path):
    settings = Settings(data_dir=tmp_path, kafka_brokers=3, kafka_bootstrap=THREE, kafka_controller_port=19093)
    nodes = broker.nodes(settings)
    assert [(n.name, n.node_id, n.port, n.controller_port) for n in nodes] == [
        ("kafka", 1, 19092, 19093),
        ("kafka-2", 2, 19094, 19095),
        ("kafka-3", 3, 19096, 19097),
    ]
    third = properties(broker.server_properties(settings, 2, tmp_path / "kafka-3" / "data"))
    assert third["node.id"] == "3"
    assert third["controller.quorum.voters"] == "1@127.0.0.1:19093,2@127.0.0.1:19095,3@127.0.0.1:19097"
    assert third["listeners"] == "PLAINTEXT://127.0.0.1:19096,CONTROLLER://127.0.0.1:19097"
    assert third["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19096"
    # Internal topics survive a broker down, and acks=all writes go on with one replica missing.
    assert third["offsets.topic.replication.factor"] == "3"
    assert third["transaction.state.log.replication.factor"] == "3"
    assert third["default.replication.factor"] == "3"
    assert third["transaction.state.log.min.isr"] == "2"
    assert third["min.insync.replicas"] == "2"
    assert broker.home(settings, 1) == tmp_path / "kafka-2"


def test_a_cluster_needs_one_bootstrap_address_per_broker(tmp_path):
    with pytest.raises(ValueError, match="kafka_brokers=3 needs kafka_bootstrap to list"):
        broker.nodes(Settings(data_dir=tmp_path, kafka_brokers=3, kafka_bootstrap="127.0.0.1:19092"))


def test_colliding_ports_are_refused(tmp_path):
    settings = Settings(
        data_dir=tmp_path,
        kafka_brokers=2,
        kafka_bootstrap="127.0.0.1:19092,127.0.0.1:19093",
        kafka_controller_port=19093,
    )
    with pytest.raises(ValueError, match="collide"):
        broker.nodes(settings)


@pytest.mark.parametrize(
    ("brokers", "explicit", "replicas", "min_insync"),
    [(1, None, 1, 1), (2, None, 2, 1), (3, None, 3, 2), (5, None, 3, 2), (3, 1, 1, 1)],
)
def test_replication_follows_the_cluster_size_unless_set(brokers, explicit, replicas, min_insync):
    settings = Settings(kafka_brokers=brokers, topic_replication=explicit)
    assert (settings.replication_factor, settings.min_insync_replicas) == (replicas, min_insync)


def test_min_insync_replicas_can_be_set():
    assert Settings(kafka_brokers=3, topic_min_insync_replicas=3).min_insync_replicas == 3


def test_cluster_id_is_kafka_shaped():
    for _ in range(200):
        cluster_id = broker.new_cluster_id()
        assert len(cluster_id) == 22 and not cluster_id.startswith("-")
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


def test_java_command_runs_the_main_class_with_the_log4j_file(tmp_path):
    settings = Settings(data_dir=tmp_path)
    command = broker.java_command(
        settings, "a.jar:b.jar", tmp_path / "log4j.properties", "kafka.Kafka", "server.properties"
    )
    assert command[0] == str(settings.kafka_java_home / "bin" / "java")
    assert f"-Dlog4j.configuration=file:{tmp_path / 'log4j.properties'}" in command
    assert command[-4:] == ["-cp", "a.jar:b.jar", "kafka.Kafka", "server.properties"]
    assert "-Xmx1g" in command


def test_a_data_dir_formatted_for_one_broker_refuses_a_cluster_of_three(tmp_path):
    one = Settings(data_dir=tmp_path, kafka_bootstrap="127.0.0.1:19092", kafka_controller_port=19093)
    (broker.home(one) / "data").mkdir(parents=True)
    # As formatted before the quorum was written down: one node on kafka_controller_port.
    (broker.home(one) / "data" / "meta.properties").write_text("node.id=1\n")
    three = Settings(data_dir=tmp_path, kafka_brokers=3, kafka_bootstrap=THREE, kafka_controller_port=19093)
    with pytest.raises(RuntimeError, match="formatted for the controller quorum 1@127.0.0.1:19093, not 1@"):
        broker.prepare(three, 0)
