"""Full-text search over the clean pages in Elasticsearch: the query body (pure) and the client.

The index and its mapping belong to the index sink (consumers/search_index.py); this reads
through the alias `settings.es_index`. The query text goes into a `multi_match`, never a
query string: a user's text cannot be Elasticsearch syntax.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from elasticsearch import ApiError, Elasticsearch, NotFoundError, TransportError

from streams.bus import ServiceUnavailable

SEARCHED_FIELDS = ["title^3", "summary^2", "text"]
HIGHLIGHTED_FIELDS = ("title", "summary", "text")
RETURNED_FIELDS = ["url", "domain", "title", "summary", "language", "published", "fetched_at"]
MAX_RESULT_WINDOW = 10_000  # Elasticsearch's default index.max_result_window


class SearchRefused(ValueError):
    """Elasticsearch refused the query itself (a 400): the request's fault, not the service's."""


@dataclass(frozen=True)
class SearchQuery:
    text: str
    domain: str | None = None
    language: str | None = None
    offset: int = 0
    size: int = 10


def search_body(query: SearchQuery) -> dict[str, Any]:
    filters = [
        {"term": {field: value}} for field, value in (("domain", query.domain), ("language", query.language)) if value
    ]
    return {
        "query": {
            "bool": {
                "must": [{"multi_match": {"query": query.text, "fields": SEARCHED_FIELDS}}],
                "filter": filters,
            }
        },
        "highlight": {
            "fields": {field: {} for field in HIGHLIGHTED_FIELDS},
            "fragment_size": 160,
            "number_of_fragments": 3,
            "pre_tags": ["<em>"],
            "post_tags": ["</em>"],
            # Fragments are page text: escape it, so only the <em> markers are markup.
            "encoder": "html",
        },
        "_source": RETURNED_FIELDS,
        "from": query.offset,
        "size": query.size,
        "track_total_hits": True,
    }


class PageSearch:
    """A client of the pages alias; `search` blocks (call it off the event loop)."""

    def __init__(self, es_url: str, alias: str, timeout_s: float) -> None:
        self._alias = alias
        # No retries: the caller answers 503 and the client decides when to come back.
        self._es = Elasticsearch(es_url, request_timeout=timeout_s, max_retries=0, retry_on_timeout=False)

    def search(self, query: SearchQuery) -> dict[str, Any]:
        try:
            return dict(self._es.search(index=self._alias, **search_body(query)))
        except NotFoundError as exc:
            raise ServiceUnavailable(
                f"the search index {self._alias!r} does not exist yet: no page is indexed"
            ) from exc
        except TransportError as exc:
            raise ServiceUnavailable(f"Elasticsearch is unreachable: {exc}") from exc
        except ApiError as exc:
            if exc.meta.status == 400:
                raise SearchRefused(f"Elasticsearch refused the query: {exc.message}") from exc
            raise ServiceUnavailable(f"Elasticsearch answered {exc.meta.status}: {exc.message}") from exc
