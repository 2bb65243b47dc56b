"""GET /v1/search against the real Elasticsearch, on pages indexed by the index sink into a throwaway alias."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from elasticsearch import Elasticsearch
from fastapi.testclient import TestClient

from api.main import create_app
from consumers.search_index import PageIndexSink
from ctrlgpt.settings import Settings
from streams import topics
from streams.bus import Received
from streams.records import PageCleaned

pytestmark = pytest.mark.integration


def _page(url: str, domain: str, language: str, title: str, text: str) -> Received:
    page = PageCleaned(
        url=url,
        domain=domain,
        title=title,
        summary=f"About {title.lower()}.",
        text=text,
        language=language,
        content_sha256="0" * 64,
        fetched_at=datetime.now(UTC),
        crawl_id="test-search",
    )
    return Received(page, topics.PAGES_CLEAN.name, 0, 0, url.encode(), topics.PAGES_CLEAN.encode(page))


@pytest.fixture
def alias(settings: Settings) -> Iterator[str]:
    name = f"ctrlgpt-test-{uuid.uuid4().hex[:10]}"
    yield name
    es = Elasticsearch(settings.es_url)
    es.options(ignore_status=404).indices.delete(index=f"{name}-v1")
    es.options(ignore_status=404).indices.delete_index_template(name=f"{name}-pages")
    es.close()


@pytest.fixture
def marker(settings: Settings, alias: str) -> str:
    """A word only this test's pages contain; pages on two hosts, in two languages."""
    word = f"lighthouse{uuid.uuid4().hex[:8]}"
    sink = PageIndexSink(es_url=settings.es_url, alias=alias)
    sink.setup()
    sink.write(
        [
            _page(f"https://a.test/{word}/1", "a.test", "en", "Harbor news", f"The {word} keeper sang <b>loudly</b>."),
            _page(f"https://a.test/{word}/2", "a.test", "de", "Hafen", f"Der {word} Wärter sang."),
            _page(f"https://b.test/{word}/3", "b.test", "en", f"The {word} storm", "Waves and wind all night."),
            _page(f"https://b.test/{word}/4", "b.test", "en", "Unrelated", "Nothing to see here."),
        ]
    )
    sink.close()
    Elasticsearch(settings.es_url).indices.refresh(index=alias)
    return word


@pytest.fixture
def client(settings: Settings, alias: str) -> Iterator[TestClient]:
    with TestClient(create_app(settings.model_copy(update={"es_index": alias}), follow_updates=False)) as client:
        yield client


def test_search_finds_highlights_filters_and_pages(client: TestClient, marker: str) -> None:
    everything = client.get("/v1/search", params={"q": marker}).json()
    assert everything["total"] == 3
    urls = [hit["url"] for hit in everything["hits"]]
    assert urls[0] == f"https://b.test/{marker}/3"  # a title match outweighs a body match
    first = everything["hits"][0]
    assert first["highlights"]["title"] == [f"The <em>{marker}</em> storm"]
    by_url = {hit["url"]: hit for hit in everything["hits"]}
    # Page text is escaped: only the match markers are markup.
    assert "&lt;b&gt;loudly&lt;&#x2F;b&gt;" in by_url[f"https://a.test/{marker}/1"]["highlights"]["text"][0]

    english_on_a = client.get("/v1/search", params={"q": marker, "domain": "a.test", "language": "en"}).json()
    assert [hit["url"] for hit in english_on_a["hits"]] == [f"https://a.test/{marker}/1"]

    second_page = client.get("/v1/search", params={"q": marker, "from": 1, "size": 1}).json()
    assert second_page["total"] == 3
    assert [hit["url"] for hit in second_page["hits"]] == urls[1:2]


def test_a_missing_index_is_503(settings: Settings) -> None:
    missing = settings.model_copy(update={"es_index": f"ctrlgpt-test-missing-{uuid.uuid4().hex[:8]}"})
    with TestClient(create_app(missing, follow_updates=False)) as client:
        response = client.get("/v1/search", params={"q": "anything"})
    assert response.status_code == 503
    assert "does not exist yet" in response.json()["detail"]
