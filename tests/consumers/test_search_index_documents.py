from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from consumers.search_index import document_id, index_template, page_document
from streams.records import PageCleaned


def page(url: str = "https://news.test/a.html") -> PageCleaned:
    return PageCleaned(
        url=url,
        domain="news.test",
        title="A title",
        summary="A summary.",
        text="Some clean text.",
        language="en",
        content_sha256="ab" * 32,
        fetched_at=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
        crawl_id="crawl-1",
    )


def test_document_carries_every_indexed_field() -> None:
    record = page()
    assert page_document(record) == {
        "url": "https://news.test/a.html",
        "domain": "news.test",
        "title": "A title",
        "summary": "A summary.",
        "text": "Some clean text.",
        "language": "en",
        "content_sha256": "ab" * 32,
        "crawl_id": "crawl-1",
        "fetched_at": "2025-01-02T03:04:05+00:00",
        "published": None,
        "near_duplicate_of": None,
        "event_id": record.event_id,
    }


def test_document_carries_the_publication_date_and_the_original_of_a_near_duplicate() -> None:
    record = page().model_copy(
        update={"published": datetime(2024, 3, 1, tzinfo=UTC), "near_duplicate_of": "https://news.test/o.html"}
    )
    document = page_document(record)
    assert document["published"] == "2024-03-01T00:00:00+00:00"
    assert document["near_duplicate_of"] == "https://news.test/o.html"


def test_document_id_is_the_sha256_of_the_url() -> None:
    assert document_id("https://news.test/a.html") == hashlib.sha256(b"https://news.test/a.html").hexdigest()
    assert document_id("https://news.test/a.html") != document_id("https://news.test/b.html")


def test_template_maps_every_document_field_and_matches_versioned_indices() -> None:
    template = index_template("pages")
    properties = template["template"]["mappings"]["properties"]
    assert template["index_patterns"] == ["pages-v*"]
    assert set(properties) == set(page_document(page()))
    assert {properties[f]["analyzer"] for f in ("title", "summary", "text")} == {"english"}
    assert {properties[f]["type"] for f in ("url", "domain", "language", "crawl_id", "content_sha256")} == {"keyword"}
    assert properties["fetched_at"]["type"] == "date"


def test_without_an_english_analyzer_the_template_defines_an_unstemmed_one() -> None:
    template = index_template("pages", english_analyzer=False)
    analyzers = template["template"]["settings"]["analysis"]["analyzer"]
    properties = template["template"]["mappings"]["properties"]
    assert {properties[f]["analyzer"] for f in ("title", "summary", "text")} == {"english_unstemmed"}
    assert analyzers["english_unstemmed"]["filter"] == ["lowercase", "stop"]
    assert "analysis" not in index_template("pages")["template"]["settings"]
