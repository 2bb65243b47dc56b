"""GET /v1/search: full-text search over the crawled pages, with highlights and filters."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from api.page_search import MAX_RESULT_WINDOW, PageSearch, SearchQuery, SearchRefused
from api.schemas import ErrorResponse
from streams.bus import ServiceUnavailable

router = APIRouter(tags=["search"])


class SearchHit(BaseModel):
    url: str
    title: str
    domain: str
    language: str
    summary: str
    published: datetime | None
    score: float
    highlights: dict[str, list[str]] = Field(
        description="Matching fragments per field (title, summary, text), HTML-escaped, matches in <em>."
    )


class SearchResponse(BaseModel):
    total: int = Field(description="Pages matching the query and filters.")
    took_ms: int
    hits: list[SearchHit]


async def page_search(request: Request) -> PageSearch:
    """One client per app, made on the first search (the event loop runs one dependency at a time)."""
    state = request.app.state
    if getattr(state, "page_search", None) is None:
        settings = state.settings
        state.page_search = PageSearch(settings.es_url, settings.es_index, settings.search_timeout_s)
    return state.page_search


@router.get(
    "/v1/search",
    response_model=SearchResponse,
    responses={503: {"model": ErrorResponse, "description": "Elasticsearch is down or has no index yet."}},
)
async def search_pages(
    searcher: Annotated[PageSearch, Depends(page_search)],
    q: Annotated[str, Query(min_length=1, max_length=500, pattern=r"\S", description="Words to look for.")],
    domain: Annotated[str | None, Query(min_length=1, max_length=253, description="Only pages of this host.")] = None,
    language: Annotated[
        str | None, Query(min_length=2, max_length=16, description="Only pages in this language (ISO code).")
    ] = None,
    offset: Annotated[int, Query(alias="from", ge=0, le=MAX_RESULT_WINDOW, description="Hits to skip.")] = 0,
    size: Annotated[int, Query(ge=1, le=50, description="Hits to return.")] = 10,
) -> SearchResponse:
    if offset + size > MAX_RESULT_WINDOW:
        message = f"from + size must be at most {MAX_RESULT_WINDOW}"
        raise RequestValidationError([{"type": "less_than_equal", "loc": ("query", "from"), "msg": message}])
    query = SearchQuery(text=q, domain=domain, language=language, offset=offset, size=size)
    try:
        answer = await run_in_threadpool(searcher.search, query)
    except SearchRefused as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc)) from exc
    except ServiceUnavailable as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(exc), headers={"Retry-After": "10"}
        ) from exc
    return SearchResponse(
        total=answer["hits"]["total"]["value"],
        took_ms=answer["took"],
        hits=[_hit(one) for one in answer["hits"]["hits"]],
    )


def _hit(hit: dict[str, Any]) -> SearchHit:
    source = hit["_source"]
    return SearchHit(
        url=source["url"],
        title=source.get("title", ""),
        domain=source.get("domain", ""),
        language=source.get("language", ""),
        summary=source.get("summary", ""),
        published=source.get("published"),
        score=hit.get("_score") or 0.0,
        highlights=hit.get("highlight", {}),
    )
