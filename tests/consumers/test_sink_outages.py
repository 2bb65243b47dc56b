"""Outages are pauses: the real sinks, as `ctrlgpt` subprocesses, through Elasticsearch, doccano or Kafka
killed and started again while pages flow.

Elasticsearch and doccano stay down for longer than the sink's `max.poll.interval.ms` (lowered by its
setting): a sink that waited without polling would leave its group and die on its next commit. Here it
must stay alive in its group (the same member id throughout), and every page lands exactly once.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient
from crawl_harness import start_group_at_end, wait_until_caught_up
from elasticsearch import Elasticsearch
from faults import kill_service, start_service

from consumers.doccano_client import DoccanoClient
from consumers.passages import split_passages
from ctrlgpt.retry import retrying
from ctrlgpt.settings import REPO_ROOT, Settings
from streams import bus, groups, topics
from streams.records import PageCleaned

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

MAX_POLL_INTERVAL_MS = 10_000
# Consumer settings that make a sink which stops polling leave its group within seconds.
SHORT_GROUP_TIMEOUTS = [f"kafka_max_poll_interval_ms={MAX_POLL_INTERVAL_MS}", "kafka_session_timeout_ms=6000"]
# How long a service stays down: well past max.poll.interval.ms.
OUTAGE_S = 2 * MAX_POLL_INTERVAL_MS / 1000


def _page(run: str, n: int) -> PageCleaned:
    text = "\n".join(
        f"Paragraph {p} of story {n}: the ferry left the harbour at dawn and the market opened. " * 4 for p in range(3)
    )
    return PageCleaned(
        url=f"https://outage-{run}.example.org/{n}",
        domain=f"outage-{run}.example.org",
        title=f"Story {n}",
        summary="A story.",
        text=text,
        language="en",
        content_sha256="0" * 64,
        fetched_at=datetime.now(UTC),
        crawl_id=run,
    )


def _publish(settings: Settings, pages: list[PageCleaned]) -> None:
    producer = bus.make_producer(settings)
    bus.deliver_all(producer, [bus.Outgoing.of(topics.PAGES_CLEAN, page) for page in pages])


def _start(command: str, overrides: list[str], log_path: Path) -> subprocess.Popen:
    sets = [arg for override in overrides for arg in ("--set", override)]
    with log_path.open("ab") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", "ctrlgpt.cli", *sets, command],
            cwd=REPO_ROOT,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )


def _stop(worker: subprocess.Popen) -> int:
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
    return worker.wait(timeout=60)


def _members(settings: Settings, group: str) -> list[str]:
    """Member ids of the group's members that hold partitions (waits until there is one)."""
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})

    def holding() -> list[str]:
        description = admin.describe_consumer_groups([group])[group].result(timeout=10)
        members = [m.member_id for m in description.members if m.assignment.topic_partitions]
        assert members, f"no member of {group} holds partitions yet"
        return members

    return retrying(AssertionError, what=f"{group} members", give_up_after_s=60, max_delay_s=1)(holding)


def _wait(what: str, check, timeout: float = 120.0):
    def attempt():
        found = check()
        assert found, what
        return found

    return retrying(AssertionError, what=what, give_up_after_s=timeout, max_delay_s=1)(attempt)


def _indexed_urls(es: Elasticsearch, alias: str, crawl_id: str) -> Counter[str]:
    es.indices.refresh(index=alias)
    hits = es.search(index=alias, query={"term": {"crawl_id": crawl_id}}, size=1000, source=["url"])["hits"]["hits"]
    return Counter(hit["_source"]["url"] for hit in hits)


def _down_for(worker: subprocess.Popen, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert worker.poll() is None, "the sink died during the outage"
        time.sleep(1)


def test_the_index_sink_stays_in_its_group_through_an_elasticsearch_outage(settings: Settings, tmp_path) -> None:
    run = uuid.uuid4().hex
    alias, group = f"test-outage-{run}", f"test-outage-index-{run}"
    pages = [_page(run, n) for n in range(60)]
    bus.ensure_topics(settings, [topics.PAGES_CLEAN, topics.dead_letter_topic("index")])
    start_group_at_end(settings, group, topics.PAGES_CLEAN)
    log_path = tmp_path / "index-sink.log"
    sink = _start("index-sink", [f"es_index={alias}", f"es_sink_group={group}", *SHORT_GROUP_TIMEOUTS], log_path)
    es = Elasticsearch(settings.es_url)
    try:
        _publish(settings, pages[:20])
        _wait(
            "the first pages indexed",
            lambda: es.indices.exists_alias(name=alias) and len(_indexed_urls(es, alias, run)) == 20,
        )
        before = _members(settings, group)
        kill_service(settings, "elasticsearch")
        try:
            _publish(settings, pages[20:40])
            _down_for(sink, OUTAGE_S / 2)
            _publish(settings, pages[40:])
            _down_for(sink, OUTAGE_S / 2)
            during = _members(settings, group)
        finally:
            start_service(settings, "elasticsearch")
        indexed = _wait("every page indexed", lambda: (found := _indexed_urls(es, alias, run)).total() >= 60 and found)
        wait_until_caught_up(settings, group, topics.PAGES_CLEAN, timeout=60)
        after = _members(settings, group)
        alive = sink.poll() is None
    finally:
        rc = _stop(sink)
        es.options(ignore_status=404).indices.delete(index=f"{alias}-v1")
        es.options(ignore_status=404).indices.delete_index_template(name=f"{alias}-pages")
        es.close()
    log = log_path.read_text(errors="replace")

    assert alive and rc == 0, log
    assert before == during == after, log
    assert indexed == Counter(page.url for page in pages), log
    assert "stage.paused" in log, "Elasticsearch was never missed: the test proves nothing"


def test_the_doccano_sink_stays_in_its_group_through_a_doccano_outage(
    settings: Settings, doccano: DoccanoClient, tmp_path
) -> None:
    run = uuid.uuid4().hex
    project, expansions = f"test outage {run}", f"test outage expansions {run}"
    pages = [_page(run, n) for n in range(16)]
    bus.ensure_topics(settings, [topics.PAGES_CLEAN, topics.dead_letter_topic("doccano")])
    start_group_at_end(settings, groups.DOCCANO_SINK, topics.PAGES_CLEAN)
    log_path = tmp_path / "doccano-sink.log"
    # doccano takes a few requests per passage: a batch's write must fit in max.poll.interval.ms.
    sink = _start(
        "doccano-sink",
        [f"doccano_project={project}", f"doccano_expansion_project={expansions}", *SHORT_GROUP_TIMEOUTS],
        log_path,
    )
    try:
        _publish(settings, pages[:4])
        _wait("the first pages in doccano", lambda: len(_passage_keys(settings, project)) >= 4)
        before = _members(settings, groups.DOCCANO_SINK)
        kill_service(settings, "doccano")
        try:
            _publish(settings, pages[4:10])
            _down_for(sink, OUTAGE_S / 2)
            _publish(settings, pages[10:])
            _down_for(sink, OUTAGE_S / 2)
            during = _members(settings, groups.DOCCANO_SINK)
        finally:
            start_service(settings, "doccano")
        expected = Counter(p.key for page in pages for p in split_passages(page.url, page.text))
        wait_until_caught_up(settings, groups.DOCCANO_SINK, topics.PAGES_CLEAN, timeout=180)
        found = _passage_keys(settings, project)
        after = _members(settings, groups.DOCCANO_SINK)
        alive = sink.poll() is None
    finally:
        rc = _stop(sink)
        for name in (project, expansions):
            if (found_project := _client(settings).find_project(name)) is not None:
                _client(settings).delete_project(found_project["id"])
    log = log_path.read_text(errors="replace")

    assert alive and rc == 0, log
    assert before == during == after, log
    assert found == expected, log
    assert "stage.paused" in log, "doccano was never missed: the test proves nothing"


def test_the_index_sink_rides_out_kafka_killed_and_started_again(settings: Settings, tmp_path) -> None:
    """Kafka goes away while the sink holds a batch (Elasticsearch away too), so the sink writes it and commits
    with no broker to commit to (a session long enough that the assignment outlives the wait): the sink goes on."""
    run = uuid.uuid4().hex
    alias, group = f"test-kafka-{run}", f"test-kafka-index-{run}"
    pages = [_page(run, n) for n in range(90)]
    bus.ensure_topics(settings, [topics.PAGES_CLEAN, topics.dead_letter_topic("index")])
    start_group_at_end(settings, group, topics.PAGES_CLEAN)
    log_path = tmp_path / "index-sink.log"
    sink = _start(
        "index-sink", [f"es_index={alias}", f"es_sink_group={group}", "kafka_session_timeout_ms=180000"], log_path
    )
    es = Elasticsearch(settings.es_url)
    producer = bus.make_producer(settings)
    try:
        _publish(settings, pages[:30])
        _wait(
            "the first pages indexed",
            lambda: es.indices.exists_alias(name=alias) and len(_indexed_urls(es, alias, run)) == 30,
        )
        kill_service(settings, "elasticsearch")
        _publish(settings, pages[30:60])
        _wait("the sink holding a batch", lambda: "stage.paused" in log_path.read_text(errors="replace"))
        kill_service(settings, "kafka")
        try:
            # Pages keep coming while Kafka is away: the producer holds them until it is back.
            for page in pages[60:]:
                bus.publish(producer, topics.PAGES_CLEAN, page)
            start_service(settings, "elasticsearch")
            _wait("the held batch written", lambda: len(_indexed_urls(es, alias, run)) == 60)
            _down_for(sink, 5)
        finally:
            start_service(settings, "kafka")
        bus.flush_or_raise(producer, timeout=120)
        indexed = _wait(
            "every page indexed", lambda: (found := _indexed_urls(es, alias, run)).total() >= len(pages) and found
        )
        wait_until_caught_up(settings, group, topics.PAGES_CLEAN, timeout=120)
        alive = sink.poll() is None
    finally:
        rc = _stop(sink)
        es.options(ignore_status=404).indices.delete(index=f"{alias}-v1")
        es.options(ignore_status=404).indices.delete_index_template(name=f"{alias}-pages")
        es.close()
    log = log_path.read_text(errors="replace")

    assert alive and rc == 0, log
    assert indexed == Counter(page.url for page in pages), log


def test_the_index_sink_rejoins_its_group_after_kafka_was_away_past_its_session(settings: Settings, tmp_path) -> None:
    """Kafka away for longer than the session timeout: the sink loses its assignment, and rejoins when Kafka is back."""
    run = uuid.uuid4().hex
    alias, group = f"test-rejoin-{run}", f"test-rejoin-index-{run}"
    pages = [_page(run, n) for n in range(60)]
    bus.ensure_topics(settings, [topics.PAGES_CLEAN, topics.dead_letter_topic("index")])
    start_group_at_end(settings, group, topics.PAGES_CLEAN)
    log_path = tmp_path / "index-sink.log"
    sink = _start("index-sink", [f"es_index={alias}", f"es_sink_group={group}", *SHORT_GROUP_TIMEOUTS], log_path)
    es = Elasticsearch(settings.es_url)
    producer = bus.make_producer(settings)
    try:
        _publish(settings, pages[:30])
        _wait(
            "the first pages indexed",
            lambda: es.indices.exists_alias(name=alias) and len(_indexed_urls(es, alias, run)) == 30,
        )
        kill_service(settings, "kafka")
        try:
            for page in pages[30:]:
                bus.publish(producer, topics.PAGES_CLEAN, page)
            _down_for(sink, 12)
        finally:
            start_service(settings, "kafka")
        bus.flush_or_raise(producer, timeout=120)
        indexed = _wait(
            "every page indexed", lambda: (found := _indexed_urls(es, alias, run)).total() >= len(pages) and found
        )
        wait_until_caught_up(settings, group, topics.PAGES_CLEAN, timeout=120)
        alive = sink.poll() is None
    finally:
        rc = _stop(sink)
        es.options(ignore_status=404).indices.delete(index=f"{alias}-v1")
        es.options(ignore_status=404).indices.delete_index_template(name=f"{alias}-pages")
        es.close()
    log = log_path.read_text(errors="replace")

    assert alive and rc == 0, log
    assert indexed == Counter(page.url for page in pages), log
    assert log.count('"consumer.assigned"') >= 2, "the assignment was never lost: the test proves nothing"


def _client(settings: Settings) -> DoccanoClient:
    from ctrlgpt import secrets

    client = DoccanoClient(
        settings.doccano_url, settings.doccano_username, secrets.load_or_create(settings.secrets_file).doccano_password
    )
    client.login()
    return client


def _passage_keys(settings: Settings, project_name: str) -> Counter[str]:
    client = _client(settings)
    try:
        project = client.find_project(project_name)
        if project is None:
            return Counter()
        return Counter(example["meta"]["passage_key"] for example in client.iter_examples(project["id"]))
    finally:
        client.close()
