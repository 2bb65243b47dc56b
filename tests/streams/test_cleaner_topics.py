"""The cleaner's internal topic and record: named after its app, one partition, outside the services' contract."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from streams import topics
from streams.cleaner_topics import (
    FingerprintedPage,
    PagesFingerprinted,
    fingerprinted_topic,
)
from streams.records import PageCleaned


def _page(url: str) -> PageCleaned:
    return PageCleaned(
        url=url,
        domain="example.org",
        title="A title",
        summary="",
        text="Some text.",
        language="en",
        content_sha256="0" * 64,
        fetched_at=datetime(2026, 1, 1, tzinfo=UTC),
        crawl_id="test",
    )


def test_the_internal_topic_is_the_apps_own_with_a_partition_per_shard_and_not_in_the_registry():
    topic = fingerprinted_topic("test-cleaner", 3)
    assert (topic.name, topic.partitions, topic.record) == ("test-cleaner-fingerprinted", 3, PagesFingerprinted)
    with pytest.raises(KeyError):
        topics.by_name(topic.name)


def test_a_cleaned_batch_round_trips_with_its_fingerprints():
    topic = fingerprinted_topic("test-cleaner", 1)
    batch = PagesFingerprinted(
        pages=[
            FingerprintedPage(page=_page("http://example.org/a"), simhash=2**64 - 1),
            FingerprintedPage(page=_page("http://example.org/b"), simhash=0),
        ]
    )
    assert topic.decode(topic.encode(batch)) == batch
    with pytest.raises(ValueError):
        FingerprintedPage(page=_page("http://example.org/c"), simhash=2**64)
