"""Three brokers on loopback, one killed with SIGKILL mid-backlog and started again later: the cleaner and the
index sink keep running, no page is lost or indexed twice, the partitions' leaders leave the killed broker and
come back to it.

The cluster is one of its own (its own data directory, supervisord and ports: those of the running stack's
broker plus 2, 4 and 6), started by the deploy code as `ctrlgpt services up` starts one with kafka_brokers=3;
the one-broker stack the other tests use is not touched. Elasticsearch is the running stack's, with an index of
the test's own.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from cleaner_harness import (
    CleanReader,
    article,
    html,
    publish,
    raw,
    start_cleaner,
    start_index_sink,
    stop,
    unique_urls,
    wait_for_index_count,
)
from confluent_kafka import ElectionType, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType
from elasticsearch import Elasticsearch
from faults import kill_service, start_service

from consumers.search_index import PageIndexSink
from ctrlgpt.settings import Settings
from deploy import processes, services, supervisor
from deploy.kafka import broker
from streams import bus, topics

pytestmark = pytest.mark.integration

BROKERS = 3
PAGES = 300
WATCHED = (topics.PAGES_RAW.name, topics.PAGES_CLEAN.name)


@pytest.fixture(scope="module")
def cluster(settings: Settings) -> Iterator[Settings]:
    host, port = broker.listener(settings.kafka_bootstrap.split(",")[0])
    # Short: supervisord's unix socket lives under it, and such paths are limited to 107 bytes.
    data_dir = Path(tempfile.mkdtemp(prefix="ctrlgpt-kafka3-"))
    cluster = settings.with_overrides(
        [
            f"data_dir={data_dir}",
            f"kafka_brokers={BROKERS}",
            "kafka_bootstrap=" + ",".join(f"{host}:{port + 2 * n}" for n in range(1, BROKERS + 1)),
            f"kafka_controller_port={settings.kafka_controller_port + 2}",
        ]
    )
    try:
        services.start(cluster, services.kafka_services(cluster))
        yield cluster
    finally:
        services.stop_kafka(cluster)
        supervisor.shutdown(cluster)
        shutil.rmtree(data_dir, ignore_errors=True)


def test_a_broker_killed_mid_backlog_loses_no_page_indexes_none_twice_and_gets_its_leaders_back(
    cluster: Settings, settings: Settings, tmp_path: Path
) -> None:
    lines, _ = services.status_lines(cluster)
    assert [line.split()[:2] for line in lines[:BROKERS]] == [["kafka", "up"], ["kafka-2", "up"], ["kafka-3", "up"]]
    run = uuid.uuid4().hex
    app_id, crawl, alias = f"test-cleaner-{run}", f"test-brokers-{run}", f"test-{run}"
    bus.ensure_topics(cluster, [topics.PAGES_RAW, topics.PAGES_CLEAN, topics.dead_letter_topic("clean")])
    admin = AdminClient({"bootstrap.servers": cluster.kafka_bootstrap})
    replicas = _replicas(admin)
    # Not popitem(): the returned dict is the one its callback completes the futures through.
    (raw_config,) = admin.describe_configs([ConfigResource(ResourceType.TOPIC, topics.PAGES_RAW.name)]).values()
    min_insync = raw_config.result(timeout=30)["min.insync.replicas"].value
    pages = [raw(f"https://brokers-{run}.example.com/{n}", crawl, html(f"Story {n}", article(n))) for n in range(PAGES)]
    publish(cluster, pages)
    reader = CleanReader(cluster, crawl)
    sink = PageIndexSink(es_url=settings.es_url, alias=alias)
    indexer, stop_index = start_index_sink(cluster, f"test-index-{run}", sink)
    es = Elasticsearch(settings.es_url)
    log_path = tmp_path / "cleaner.log"
    worker = start_cleaner(
        app_id,
        tmp_path / "cleaner",
        log_path,
        f"kafka_brokers={BROKERS}",
        f"kafka_bootstrap={cluster.kafka_bootstrap}",
    )
    try:
        before_kill = len(
            unique_urls(reader.read_until(lambda found: len(found) >= 20 or worker.poll() is not None, timeout=120))
        )
        # The broker that leads the raw pages' first partition (the cleaner reads it, the producers wrote it).
        victim = _leaders(admin)[(topics.PAGES_RAW.name, 0)]
        victim_name = broker.node(cluster, victim - 1).name
        kill_service(cluster, victim_name)
        processes.wait_until(
            lambda: victim not in _leaders(admin).values(), what="leaders off the killed broker", timeout=60
        )
        led_while_down = _leaders(admin)
        during_outage = len(
            unique_urls(
                reader.read_until(
                    lambda found: len(unique_urls(found)) >= min(before_kill + 40, PAGES) or worker.poll() is not None,
                    timeout=90,
                )
            )
        )
        start_service(cluster, victim_name)
        cleaned = reader.read_until(
            lambda found: len(unique_urls(found)) >= PAGES or worker.poll() is not None, timeout=120
        )
        indexed = wait_for_index_count(es, alias, crawl, PAGES)
        # Kafka moves leadership back on its own only every leader.imbalance.check.interval.seconds (5 min):
        # the test asks for the preferred leaders at once, as an operator would after a restart.
        processes.wait_until(
            lambda: all(len(isr) == BROKERS for isr in _in_sync(admin).values()),
            what="the restarted broker back in every partition's in-sync replicas",
            timeout=90,
        )
        admin.elect_leaders(
            ElectionType.PREFERRED, [TopicPartition(topic, partition) for topic, partition in replicas]
        ).result(timeout=30)
        processes.wait_until(
            lambda: _leaders(admin) == {tp: assigned[0] for tp, assigned in replicas.items()},
            what="the preferred leaders back",
            timeout=30,
        )
        worker_running, indexer_running = worker.poll() is None, indexer.is_alive()
    finally:
        worker_rc = stop(worker)
        stop_index.set()
        indexer.join(timeout=60)
        reader.close()
        es.indices.delete(index=sink.first_index, ignore_unavailable=True)
        es.options(ignore_status=404).indices.delete_index_template(name=f"{alias}-pages")
        es.close()
    log = log_path.read_text(errors="replace")
    repeats = sum(count - 1 for count in Counter(page.url for page in cleaned).values())
    print(
        f"killed broker {victim}; pages cleaned before the kill: {before_kill}, while it was down: {during_outage}; "
        f"on the clean topic: {len(cleaned)}, repeats: {repeats}"
    )

    assert {len(assigned) for assigned in replicas.values()} == {BROKERS}
    assert min_insync == "2"
    assert before_kill < PAGES, "the backlog was done before the kill: the test proves nothing"
    assert victim not in led_while_down.values()
    assert during_outage > before_kill, "nothing was cleaned while a broker was down"
    assert unique_urls(cleaned) == {page.url for page in pages}, log
    assert indexed == PAGES, log
    assert victim in _leaders(admin).values()
    assert (worker_running, indexer_running) == (True, True), log
    assert worker_rc == 0, log


def _replicas(admin: AdminClient) -> dict[tuple[str, int], list[int]]:
    metadata = admin.list_topics(timeout=10).topics
    return {(name, p.id): list(p.replicas) for name in WATCHED for p in metadata[name].partitions.values()}


def _leaders(admin: AdminClient) -> dict[tuple[str, int], int]:
    metadata = admin.list_topics(timeout=10).topics
    return {(name, p.id): p.leader for name in WATCHED for p in metadata[name].partitions.values()}


def _in_sync(admin: AdminClient) -> dict[tuple[str, int], list[int]]:
    metadata = admin.list_topics(timeout=10).topics
    return {(name, p.id): list(p.isrs) for name in WATCHED for p in metadata[name].partitions.values()}
