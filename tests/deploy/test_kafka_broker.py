import base64

import pytest

from ctrlgpt.settings import Settings
from deploy.kafka import broker


def properties(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))


def test_listener_is_the_first_bootstrap_entry():
    assert broker.listener("127.0.0.1:9092") == ("127.0.0.1", 9092)
    assert broker.listener("localhost:19092,other:9092") == ("localhost", 19092)


@pytest.mark.parametrize("bootstrap", ["127.0.0.1", ":9092", "host:port"])
def test_listener_refuses_what_is_not_host_port(bootstrap):
    with pytest.raises(ValueError, match="HOST:PORT"):
        broker.listener(bootstrap)


def test_server_properties_make_one_combined_kraft_node(tmp_path):
    settings = Settings(data_dir=tmp_path, kafka_bootstrap="127.0.0.1:19092", kafka_controller_port=19093)
    props = properties(broker.server_properties(settings, tmp_path / "data"))
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert props["log.dirs"] == str(tmp_path / "data")
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["transaction.state.log.replication.factor"] == "1"
    assert props["group.initial.rebalance.delay.ms"] == "0"


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
