"""The cleaner against the real broker and Elasticsearch: near duplicates across a restart,
no page lost or indexed twice after kill -9, and two workers handing partitions over."""

from __future__ import annotations

import signal
import time
import uuid
from collections import Counter

import pytest
from cleaner_harness import (
    CleanReader,
    article,
    html,
    publish,
    raw,
    start_cleaner,
    start_group_at_end,
    start_index_sink,
    stop,
    unique_urls,
    wait_for_index_count,
)
from confluent_kafka.admin import AdminClient
from elasticsearch import Elasticsearch

from consumers.search_index import PageIndexSink
from ctrlgpt.settings import Settings
from streams import bus, topics

pytestmark = pytest.mark.integration


def test_near_duplicates_are_marked_and_the_fingerprints_survive_a_restart(settings, tmp_path):
    run = uuid.uuid4().hex
    app_id, crawl = f"test-cleaner-{run}", f"test-dedup-{run}"
    bus.ensure_topics(settings, [topics.PAGES_RAW, topics.PAGES_CLEAN, topics.dead_letter_topic("clean")])
    start_group_at_end(settings, app_id, topics.PAGES_RAW.name)
    reader = CleanReader(settings, crawl)
    story, copy, other, later = (
        f"https://site-{run}.example.com/{name}" for name in ("story", "copy", "other", "later")
    )
    text = article(1)
    edited = text.replace(text.split(" ")[40], "zebra", 1)
    log_path = tmp_path / "cleaner.log"
    # Pages on different raw partitions: the near-duplicate agent sees them all whatever their partition.
    # Partitions are not ordered among themselves, so the original is cleaned before its copy is published.
    publish(settings, [raw(story, crawl, html("Story", text))], partition=0)
    publish(settings, [raw(other, crawl, html("Other", article(2)))], partition=2)
    worker = start_cleaner(app_id, tmp_path / "first", log_path)
    try:
        reader.read_until(lambda pages: len(pages) >= 2 or worker.poll() is not None)
        publish(settings, [raw(copy, crawl, html("Copy", edited))], partition=1)
        publish(settings, [raw(story, crawl, html("Story", text))], partition=2)
        first = list(
            reader.read_until(
                lambda pages: (
                    (sum(page.url == story for page in pages) >= 2 and copy in unique_urls(pages))
                    or worker.poll() is not None
                )
            )
        )
    finally:
        first_rc = stop(worker)
    publish(settings, [raw(later, crawl, html("Later", text))], partition=1)
    worker = start_cleaner(app_id, tmp_path / "second", log_path)
    try:
        second = reader.read_until(lambda pages: later in unique_urls(pages) or worker.poll() is not None)[len(first) :]
    finally:
        second_rc = stop(worker)
        reader.close()
    log = log_path.read_text(errors="replace")

    # Pages of different URLs may be read back in any order, and at least once (a page may come twice).
    assert {(page.url, page.near_duplicate_of) for page in first} == {(story, None), (copy, story), (other, None)}, log
    assert sum(page.url == story for page in first) >= 2, log
    # A fresh process with an empty data dir: what it knows came from the table's changelog.
    assert {(page.url, page.near_duplicate_of) for page in second} == {(later, story)}, log
    assert (first_rc, second_rc) == (0, 0), log


# faust-streaming #596 (a worker taking over partitions while it rebuilds its table can skip
# fetched messages) made these two fail under load until the cleaner watched its offsets
# (streams/partition_progress.py). `make test-guarantees` runs them alone, e.g. in a loop.
@pytest.mark.delivery_guarantee
def test_kill_9_mid_backlog_loses_no_page_and_indexes_none_twice(settings, tmp_path):
    run = uuid.uuid4().hex
    app_id, crawl, alias = f"test-cleaner-{run}", f"test-kill-{run}", f"test-{run}"
    pages = [raw(f"https://kill-{run}.example.com/{n}", crawl, html(f"Story {n}", article(n))) for n in range(200)]
    bus.ensure_topics(settings, [topics.PAGES_RAW, topics.PAGES_CLEAN, topics.dead_letter_topic("clean")])
    start_group_at_end(settings, app_id, topics.PAGES_RAW.name)
    start_group_at_end(settings, f"test-index-{run}", topics.PAGES_CLEAN.name)
    reader = CleanReader(settings, crawl)
    sink = PageIndexSink(es_url=settings.es_url, alias=alias)
    indexer, stop_index = start_index_sink(settings, f"test-index-{run}", sink)
    es = Elasticsearch(settings.es_url)
    log_path = tmp_path / "cleaner.log"
    publish(settings, pages)
    try:
        worker = start_cleaner(app_id, tmp_path / "first", log_path)
        try:
            reader.read_until(lambda found: len(found) >= 10 or worker.poll() is not None)
        finally:
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=30)
        before_restart = len(unique_urls(reader.read_to_end(settings)))
        worker = start_cleaner(app_id, tmp_path / "second", log_path)
        try:
            cleaned = reader.read_until(
                lambda found: len(unique_urls(found)) >= len(pages) or worker.poll() is not None
            )
            indexed = wait_for_index_count(es, alias, crawl, len(pages))
        finally:
            restarted_rc = stop(worker)
    finally:
        stop_index.set()
        indexer.join(timeout=60)
        reader.close()
        es.indices.delete(index=sink.first_index, ignore_unavailable=True)
        es.options(ignore_status=404).indices.delete_index_template(name=f"{alias}-pages")
        es.close()
    log = log_path.read_text(errors="replace")
    repeats = sum(count - 1 for count in Counter(page.url for page in cleaned).values())
    print(f"pages cleaned before the kill: {before_restart}; on the clean topic: {len(cleaned)}, repeats: {repeats}")

    assert before_restart < len(pages), "the worker finished the backlog before it was killed: the test proves nothing"
    assert unique_urls(cleaned) == {page.url for page in pages}, log
    assert indexed == len(pages), log
    assert restarted_rc == 0, log


@pytest.mark.delivery_guarantee
def test_two_workers_share_the_partitions_and_one_stopping_hands_over_without_loss(settings, tmp_path):
    run = uuid.uuid4().hex
    app_id, crawl = f"test-cleaner-{run}", f"test-pair-{run}"
    bus.ensure_topics(settings, [topics.PAGES_RAW, topics.PAGES_CLEAN, topics.dead_letter_topic("clean")])
    start_group_at_end(settings, app_id, topics.PAGES_RAW.name)
    reader = CleanReader(settings, crawl)
    log_path = tmp_path / "cleaner.log"
    first = start_cleaner(app_id, tmp_path / "first", log_path)
    second = start_cleaner(app_id, tmp_path / "second", log_path)
    try:
        shares = _wait_for_assignment(settings, app_id, members=2)
        pages = [raw(f"https://pair-{run}.example.com/{n}", crawl, html(f"Story {n}", article(n))) for n in range(200)]
        publish(settings, pages)
        before_stop = len(reader.read_until(lambda found: len(found) >= 20 or first.poll() is not None))
        stop(first)
        cleaned = reader.read_until(lambda found: len(unique_urls(found)) >= len(pages) or second.poll() is not None)
        survivor = _wait_for_assignment(settings, app_id, members=1)
    finally:
        first_rc, second_rc = stop(first), stop(second)
        reader.close()
    log = log_path.read_text(errors="replace")

    assert sorted(len(partitions) for partitions in shares) == [1, 2], (shares, log)
    assert before_stop < len(pages), "the backlog was done before the first worker stopped: the test proves nothing"
    assert survivor == [sorted(p for partitions in shares for p in partitions)], log
    assert unique_urls(cleaned) == {page.url for page in pages}, log
    assert (first_rc, second_rc) == (0, 0), log


def _wait_for_assignment(settings: Settings, group: str, *, members: int, timeout: float = 60.0) -> list[list[int]]:
    """The raw topic's partitions of each member of the group, once it has `members` members that hold some."""
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    deadline, shares = time.monotonic() + timeout, []
    while time.monotonic() < deadline:
        description = admin.describe_consumer_groups([group])[group].result()
        shares = [
            sorted(tp.partition for tp in member.assignment.topic_partitions if tp.topic == topics.PAGES_RAW.name)
            for member in description.members
        ]
        if len(shares) == members and all(shares):
            return shares
        time.sleep(0.5)
    return shares
