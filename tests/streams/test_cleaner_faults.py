"""The cleaner through faults, against the real broker and a real `ctrlgpt cleaner` process:
Kafka killed for a minute under a backlog, and raw records it cannot clean (malformed, just under
the broker's size limit), each of which must end as a dead letter while later pages are still cleaned."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections import defaultdict

import pytest
from cleaner_harness import (
    CleanReader,
    article,
    html,
    publish,
    raw,
    start_cleaner,
    start_group_at_end,
    stop,
    unique_urls,
)
from faults import kill_service, start_service
from topic_reader import read_records

from streams import bus, topics
from streams.records import DeadLetter

pytestmark = pytest.mark.integration

KAFKA_AWAY_S = 60.0
# The broker's and the producers' message.max.bytes is 8 MiB (deploy/kafka/broker.py, streams.bus);
# random bytes do not compress, so this travels as it is.
JUST_UNDER_THE_LIMIT = 8 * 1024 * 1024 - 64 * 1024


def _raw_topics(settings) -> None:
    bus.ensure_topics(settings, [topics.PAGES_RAW, topics.PAGES_CLEAN, topics.dead_letter_topic("clean")])


def test_kafka_killed_for_a_minute_under_a_backlog_stops_no_worker_and_loses_no_page(settings, tmp_path):
    run = uuid.uuid4().hex
    app_id, crawl = f"test-cleaner-{run}", f"test-outage-{run}"
    pages = [raw(f"https://outage-{run}.example.com/{n}", crawl, html(f"Story {n}", article(n))) for n in range(300)]
    _raw_topics(settings)
    start_group_at_end(settings, app_id, topics.PAGES_RAW.name)
    reader = CleanReader(settings, crawl)
    log_path = tmp_path / "cleaner.log"
    publish(settings, pages)
    worker = start_cleaner(app_id, tmp_path / "data", log_path)
    try:
        before_kill = len(reader.read_until(lambda found: len(found) >= 10 or worker.poll() is not None))
        kill_service(settings, "kafka")
        try:
            deadline = time.monotonic() + KAFKA_AWAY_S
            while time.monotonic() < deadline and worker.poll() is None:
                time.sleep(1)
            alive_through_outage = worker.poll() is None
        finally:
            start_service(settings, "kafka")
        cleaned = reader.read_until(
            lambda found: len(unique_urls(found)) >= len(pages) or worker.poll() is not None, timeout=240
        )
        alive_at_end = worker.poll() is None
    finally:
        rc = stop(worker)
        reader.close()
    log = log_path.read_text(errors="replace")
    texts = defaultdict(set)
    for page in cleaned:
        texts[page.url].add(page.content_sha256)
    print(f"cleaned before the kill: {before_kill}; on the clean topic: {len(cleaned)} for {len(texts)} pages")

    assert 0 < before_kill < len(pages), "the backlog was not under way when Kafka died: the test proves nothing"
    assert alive_through_outage and alive_at_end, log[-20000:]
    assert unique_urls(cleaned) == {page.url for page in pages}, log[-20000:]
    # At least once: a page cleaned twice (a batch sent, its commit lost with the broker) is the same page.
    assert all(len(hashes) == 1 for hashes in texts.values())
    assert rc == 0, log[-20000:]


def test_malformed_and_oversized_raw_records_are_dead_lettered_and_later_pages_still_cleaned(settings, tmp_path):
    run = uuid.uuid4().hex
    app_id, crawl = f"test-cleaner-{run}", f"test-poison-{run}"
    poison = {
        f"{run}-just-under-the-limit": os.urandom(JUST_UNDER_THE_LIMIT),
        f"{run}-not-json": b"{not json",
        f"{run}-wrong-schema": json.dumps({"url": "https://example.com/"}).encode(),
        f"{run}-tombstone": None,
    }
    # A real page as large as the broker takes: cleaned (or, if its text alone would not fit, dead-lettered).
    huge = raw(
        f"https://poison-{run}.example.com/huge", crawl, html("Huge", "".join(article(n, 300) for n in range(55)))
    )
    later = [raw(f"https://poison-{run}.example.com/{n}", crawl, html(f"Story {n}", article(n))) for n in range(20)]
    _raw_topics(settings)
    start_group_at_end(settings, app_id, topics.PAGES_RAW.name)
    reader = CleanReader(settings, crawl)
    producer = bus.make_producer(settings)
    for key, value in poison.items():
        producer.produce(topics.PAGES_RAW.name, key=key.encode(), value=value, partition=0)
    bus.flush_or_raise(producer)
    publish(settings, [huge], partition=0)
    publish(settings, later, partition=0)  # after the poison on the same partition: cleaned only if the worker went on
    log_path = tmp_path / "cleaner.log"
    worker = start_cleaner(app_id, tmp_path / "data", log_path)
    try:
        cleaned = reader.read_until(
            lambda found: unique_urls(found) >= {page.url for page in later} or worker.poll() is not None, timeout=180
        )
        huge_key = topics.PAGES_RAW.key_of(huge).decode()
        letters = read_records(
            settings,
            topics.dead_letter_topic("clean"),
            until=lambda found: {letter.key for letter in found} >= set(poison),
            keep=lambda letter: isinstance(letter, DeadLetter) and letter.key in {*poison, huge_key},
            timeout=120,
        )
        alive = worker.poll() is None
    finally:
        rc = stop(worker)
        reader.close()
    log = log_path.read_text(errors="replace")
    by_key = {letter.key: letter for letter in letters}

    assert alive, log[-20000:]
    assert set(by_key) - {huge_key} == set(poison), log[-20000:]
    assert all(letter.stage == "clean" and letter.source_topic == topics.PAGES_RAW.name for letter in letters)
    assert "not JSON" in by_key[f"{run}-not-json"].reason
    assert "invalid PageFetched" in by_key[f"{run}-wrong-schema"].reason
    assert "tombstone" in by_key[f"{run}-tombstone"].reason
    oversized = by_key[f"{run}-just-under-the-limit"]
    assert oversized.truncated and oversized.original_size == JUST_UNDER_THE_LIMIT
    # The huge page has exactly one outcome: a clean page, or a dead letter saying it is too large.
    assert (huge.url in unique_urls(cleaned)) != (huge_key in by_key), log[-20000:]
    assert unique_urls(cleaned) >= {page.url for page in later}, log[-20000:]
    assert rc == 0, log[-20000:]
