"""GET /v1/search: the query body, bad parameters (422) and an Elasticsearch that is down (503)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.page_search import SearchQuery, search_body


def test_the_query_text_is_matched_never_parsed_and_filters_are_exact_terms():
    body = search_body(SearchQuery(text='title:"x" OR *', domain="news.test", language="en", offset=20, size=5))
    [match] = body["query"]["bool"]["must"]
    assert match["multi_match"]["query"] == 'title:"x" OR *'
    assert body["query"]["bool"]["filter"] == [{"term": {"domain": "news.test"}}, {"term": {"language": "en"}}]
    assert (body["from"], body["size"]) == (20, 5)
    assert body["highlight"]["encoder"] == "html"
    assert search_body(SearchQuery(text="x"))["query"]["bool"]["filter"] == []


@pytest.fixture(scope="module")
def client(api_settings):
    with TestClient(create_app(api_settings, follow_updates=False)) as client:
        yield client


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({}, "Field required"),
        ({"q": ""}, "at least 1 character"),
        ({"q": "   "}, "pattern"),
        ({"q": "x", "size": 0}, "greater than or equal to 1"),
        ({"q": "x", "size": 51}, "less than or equal to 50"),
        ({"q": "x", "from": -1}, "greater than or equal to 0"),
        ({"q": "x", "from": "ten"}, "valid integer"),
        ({"q": "x", "from": 9_995, "size": 10}, "from + size must be at most 10000"),
    ],
)
def test_bad_parameters_are_422_with_the_reason(client, params, fragment):
    response = client.get("/v1/search", params=params)
    assert response.status_code == 422, response.text
    assert fragment in response.text


def test_elasticsearch_down_is_503(api_settings):
    down = api_settings.model_copy(update={"es_url": "http://127.0.0.1:1", "search_timeout_s": 2.0})
    with TestClient(create_app(down, follow_updates=False)) as client:
        response = client.get("/v1/search", params={"q": "harbor"})
    assert response.status_code == 503, response.text
    assert "unreachable" in response.json()["detail"]
