"""The index sink against the real Elasticsearch, in an index of its own per test."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from elasticsearch import Elasticsearch

from consumers.search_index import (
    PageIndexSink,
    document_id,
    has_english_analyzer,
    index_template,
)
from ctrlgpt.settings import Settings
from streams import topics
from streams.bus import Received, RecordRejected, ServiceUnavailable
from streams.records import PageCleaned

pytestmark = pytest.mark.integration


def received(page: PageCleaned, offset: int = 0) -> Received:
    return Received(page, topics.PAGES_CLEAN.name, 0, offset, page.url.encode(), topics.PAGES_CLEAN.encode(page))


def page(url: str, text: str, content_sha256: str = "0" * 64) -> PageCleaned:
    return PageCleaned(
        url=url,
        domain="news.test",
        title="Harbor news",
        summary="What happened at the harbor.",
        text=text,
        language="en",
        content_sha256=content_sha256,
        fetched_at=datetime.now(UTC),
        crawl_id="test",
    )


@pytest.fixture
def es(settings: Settings) -> Iterator[Elasticsearch]:
    client = Elasticsearch(settings.es_url)
    yield client
    client.close()


@pytest.fixture
def alias(es: Elasticsearch) -> Iterator[str]:
    name = f"ctrlgpt-test-{uuid.uuid4().hex[:10]}"
    yield name
    es.options(ignore_status=404).indices.delete(index=f"{name}-v1")
    es.options(ignore_status=404).indices.delete_index_template(name=f"{name}-pages")


@pytest.fixture
def sink(settings: Settings, alias: str) -> Iterator[PageIndexSink]:
    created = PageIndexSink(es_url=settings.es_url, alias=alias)
    created.setup()
    yield created
    created.close()


def test_pages_are_found_and_indexing_again_does_not_duplicate(
    sink: PageIndexSink, es: Elasticsearch, alias: str
) -> None:
    marker = f"lighthouse{uuid.uuid4().hex[:8]}"
    pages = [page(f"https://news.test/{marker}/{i}.html", f"The {marker} keepers were singing {i}.") for i in range(3)]
    sink.write([received(p, i) for i, p in enumerate(pages)])
    es.indices.refresh(index=alias)
    hits = es.search(
        index=alias, query={"bool": {"must": [{"match": {"text": marker}}, {"match": {"text": "Singing"}}]}}
    )
    assert {hit["_source"]["url"] for hit in hits["hits"]["hits"]} == {p.url for p in pages}
    assert {hit["_id"] for hit in hits["hits"]["hits"]} == {document_id(p.url) for p in pages}

    sink.write([received(p, i) for i, p in enumerate(pages)])
    es.indices.refresh(index=alias)
    assert es.count(index=alias)["count"] == 3


def test_setup_made_a_versioned_index_behind_the_alias_and_is_repeatable(
    sink: PageIndexSink, es: Elasticsearch, alias: str
) -> None:
    sink.setup()
    assert es.indices.get_alias(name=alias).body.keys() == {f"{alias}-v1"}
    mapping = es.indices.get_mapping(index=alias)[f"{alias}-v1"]["mappings"]
    # english where the node has it; the local integ-test-zip node lacks analysis-common.
    assert mapping["properties"]["text"]["analyzer"] in ("english", "english_unstemmed")
    assert mapping["properties"]["url"]["type"] == "keyword"


def test_a_document_elasticsearch_refuses_is_rejected_and_the_others_are_indexed(
    sink: PageIndexSink, es: Elasticsearch, alias: str
) -> None:
    good = page("https://news.test/good.html", "A fine page.")
    # A keyword term over 32766 bytes: a valid record that Elasticsearch can never index.
    bad = page("https://news.test/bad.html", "Another page.", content_sha256="f" * 40_000)
    with pytest.raises(RecordRejected, match="rejected 1 of 2"):
        sink.write([received(good, 0), received(bad, 1)])
    es.indices.refresh(index=alias)
    assert [hit["_source"]["url"] for hit in es.search(index=alias)["hits"]["hits"]] == [good.url]


def test_elasticsearch_down_is_service_unavailable(alias: str) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    down = PageIndexSink(es_url=f"http://127.0.0.1:{closed_port}", alias=alias, request_timeout=2)
    with pytest.raises(ServiceUnavailable):
        down.setup()
    with pytest.raises(ServiceUnavailable):
        down.write([received(page("https://news.test/a.html", "text"))])


def test_elasticsearch_answering_429_is_service_unavailable_and_the_retry_indexes(
    sink: PageIndexSink, es: Elasticsearch, alias: str
) -> None:
    # The block Elasticsearch sets itself when a disk fills up: writes are answered 429 until it is lifted.
    es.indices.put_settings(index=alias, settings={"index.blocks.read_only_allow_delete": True})
    pages = [page(f"https://news.test/full/{i}.html", f"Page {i}.") for i in range(2)]
    try:
        with pytest.raises(ServiceUnavailable, match=r"status \[429\]"):
            sink.write([received(p, i) for i, p in enumerate(pages)])
    finally:
        es.indices.put_settings(index=alias, settings={"index.blocks.read_only_allow_delete": None})
    sink.write([received(p, i) for i, p in enumerate(pages)])
    es.indices.refresh(index=alias)
    assert es.count(index=alias)["count"] == 2


def test_an_index_made_before_new_fields_existed_gets_them_at_setup(settings, es, alias):
    # The index as the first release created it: today's template without the fields added since.
    template = index_template(alias, english_analyzer=has_english_analyzer(es))["template"]
    old_fields = {
        name: field
        for name, field in template["mappings"]["properties"].items()
        if name not in ("published", "near_duplicate_of")
    }
    es.indices.create(
        index=f"{alias}-v1",
        aliases={alias: {"is_write_index": True}},
        settings=template["settings"],
        mappings={"dynamic": "strict", "properties": old_fields},
    )
    sink = PageIndexSink(es_url=settings.es_url, alias=alias)
    sink.setup()
    try:
        dated = page("https://news.test/dated.html", "The harbor festival returned.").model_copy(
            update={"published": datetime(2024, 3, 1, tzinfo=UTC)}
        )
        sink.write([received(dated)])
    finally:
        sink.close()
    es.indices.refresh(index=alias)
    hits = es.search(index=alias, query={"range": {"published": {"gte": "2024-01-01"}}})["hits"]["hits"]
    assert [hit["_id"] for hit in hits] == [document_id(dated.url)]
