"""Rebuilding the pages index behind its alias, against the real Elasticsearch."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from elasticsearch import Elasticsearch

from consumers.index_rebuild import next_index, rebuild
from consumers.search_index import PageIndexSink
from ctrlgpt.settings import Settings
from streams import topics
from streams.bus import Received
from streams.records import PageCleaned


def received(page: PageCleaned) -> Received:
    return Received(page, topics.PAGES_CLEAN.name, 0, 0, page.url.encode(), topics.PAGES_CLEAN.encode(page))


def page(url: str) -> PageCleaned:
    return PageCleaned(
        url=url,
        domain="news.test",
        title="Harbor news",
        summary="What happened at the harbor.",
        text="The lighthouse keepers were singing.",
        language="en",
        content_sha256="0" * 64,
        fetched_at=datetime.now(UTC),
        crawl_id="test",
    )


def test_the_next_index_is_one_version_up() -> None:
    assert next_index("pages", "pages-v1") == "pages-v2"
    assert next_index("pages", "pages-v12") == "pages-v13"
    with pytest.raises(ValueError):
        next_index("pages", "other-v1")


@pytest.fixture
def es(settings: Settings) -> Iterator[Elasticsearch]:
    client = Elasticsearch(settings.es_url)
    yield client
    client.close()


@pytest.fixture
def alias(es: Elasticsearch) -> Iterator[str]:
    name = f"ctrlgpt-test-{uuid.uuid4().hex[:10]}"
    yield name
    for version in (1, 2):
        es.options(ignore_status=404).indices.delete(index=f"{name}-v{version}")
    es.options(ignore_status=404).indices.delete_index_template(name=f"{name}-pages")


@pytest.mark.integration
def test_the_alias_moves_to_a_rebuilt_index_with_every_page_and_the_sink_follows(
    settings: Settings, es: Elasticsearch, alias: str
) -> None:
    sink = PageIndexSink(es_url=settings.es_url, alias=alias)
    sink.setup()
    pages = [page(f"https://news.test/{i}.html") for i in range(3)]
    sink.write([received(p) for p in pages])

    assert rebuild(es, alias) == f"{alias}-v2"

    assert set(es.indices.get_alias(name=alias).body) == {f"{alias}-v2"}
    assert not es.indices.exists(index=f"{alias}-v1")
    assert es.count(index=alias)["count"] == 3
    sink.write([received(page("https://news.test/after.html"))])
    es.indices.refresh(index=alias)
    assert es.count(index=f"{alias}-v2")["count"] == 4
    sink.close()
