"""/v1/admin/crawls: queue a crawl, as `ctrlgpt seed` does (`producers.seed`).

The crawl-requests topic is a dependency, so a test can point it at a topic of its own.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

import structlog
from fastapi import Depends, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from api.deps import SettingsDep
from api.routes.admin_router import admin_router, answering_errors
from ctrlgpt.settings import Settings
from producers.seed import seed_requests
from streams import bus, commands, topics
from streams.records import CrawlRequested
from streams.topics import Topic

log = structlog.get_logger()

MAX_SEED_URLS = 100

router = admin_router("crawls")


async def crawl_requests_topic() -> Topic:
    return topics.CRAWL_REQUESTS


class CrawlRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    urls: list[str] = Field(min_length=1, max_length=MAX_SEED_URLS, description="Seed URLs, absolute http(s).")
    max_depth: int | None = Field(
        None, ge=0, le=20, description="Links followed from a seed; default: the crawler's setting."
    )
    allowed_domains: list[str] = Field(default_factory=list, max_length=100, description="Extra domains in scope.")
    fetch_mode: Literal["browser", "http"] = "browser"
    max_pages: int | None = Field(
        None, ge=1, description="Pages per site for this crawl; default: the crawler's setting."
    )


class CrawlAccepted(BaseModel):
    crawl_id: str
    urls: list[str] = Field(description="The seeds as queued: normalized, duplicates removed.")


@router.post("", response_model=CrawlAccepted, status_code=status.HTTP_202_ACCEPTED)
async def crawl(
    body: CrawlRequest, settings: SettingsDep, topic: Annotated[Topic, Depends(crawl_requests_topic)]
) -> CrawlAccepted:
    """Queue a crawl: one `CrawlRequested(source="api")` per distinct seed URL."""
    crawl_id = uuid.uuid4().hex
    try:
        seeds = seed_requests(
            body.urls,
            crawl_id=crawl_id,
            max_depth=settings.crawl_max_depth if body.max_depth is None else body.max_depth,
            allowed_domains=body.allowed_domains,
            fetch_mode=body.fetch_mode,
            max_pages=body.max_pages,
        )
    except ValueError as exc:
        raise RequestValidationError([{"type": "value_error", "loc": ("body", "urls"), "msg": str(exc)}]) from exc
    requests = [seed.model_copy(update={"source": "api"}) for seed in seeds]
    with answering_errors():
        await run_in_threadpool(_publish_all, settings, topic, requests)
    log.info("admin.crawl_queued", crawl_id=crawl_id, urls=[r.url for r in requests])
    return CrawlAccepted(crawl_id=crawl_id, urls=[r.url for r in requests])


def _publish_all(settings: Settings, topic: Topic, records: list[CrawlRequested]) -> None:
    producer = bus.make_producer(settings)
    for record in records:
        bus.publish(producer, topic, record)
    bus.flush_or_raise(producer, commands.PUBLISH_TIMEOUT_S)
