"""Every producer writes with acks=all and idempotence, and topics ask for the replicas the cluster can give."""

from ctrlgpt.settings import Settings
from deploy.connect import worker
from streams import bus, cleaner


def properties(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))


def test_the_cleaners_faust_producer_is_idempotent_with_acks_all():
    producer = cleaner.make_app(Settings()).producer
    assert isinstance(producer, cleaner.IdempotentProducer)
    config = {**producer._settings_default(), **producer._settings_extra()}
    assert config["acks"] == "all"
    assert config["enable_idempotence"] is True


def test_topics_ask_for_min_insync_replicas_of_the_cluster():
    assert bus.replication_config(Settings(kafka_brokers=3)) == {"min.insync.replicas": "2"}
    assert bus.replication_config(Settings()) == {"min.insync.replicas": "1"}


def test_kafka_connect_replicates_its_topics_and_produces_durably():
    props = properties(worker.worker_properties(Settings(kafka_brokers=3)))
    for topic in ("config", "offset", "status"):
        assert props[f"{topic}.storage.replication.factor"] == "3"
    assert props["producer.acks"] == "all"
    assert props["producer.enable.idempotence"] == "true"
    connector = worker.connector_config(Settings(kafka_brokers=3), Settings().secrets_file)
    assert connector["topic.creation.default.replication.factor"] == "3"
    assert connector["topic.creation.default.min.insync.replicas"] == "2"
