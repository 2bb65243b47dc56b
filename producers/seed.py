"""`ctrlgpt seed URL...`: start a crawl by publishing one crawl request per seed URL."""

from __future__ import annotations

import argparse
import sys
import uuid
from typing import Literal

import structlog

from ctrlgpt.settings import Settings
from producers.frontier import canonical_url, normalize_url
from streams import bus, topics
from streams.records import CrawlRequested

__all__ = ["main", "seed_requests"]

log = structlog.get_logger()


def seed_requests(
    urls: list[str],
    *,
    crawl_id: str,
    max_depth: int,
    allowed_domains: list[str],
    fetch_mode: Literal["browser", "http"] = "browser",
    max_pages: int | None = None,
) -> list[CrawlRequested]:
    """One depth-0 request per distinct page (canonical URL), in its fetch form; raises ValueError naming the first
    URL that is not http(s)."""
    pages: dict[str, str] = {}
    for url in urls:
        fetched = normalize_url(url)
        pages.setdefault(canonical_url(fetched), fetched)
    domains = [d.lower().strip(".") for d in allowed_domains]
    return [
        CrawlRequested(
            url=url,
            crawl_id=crawl_id,
            depth=0,
            max_depth=max_depth,
            allowed_domains=domains,
            source="seed",
            fetch_mode=fetch_mode,
            max_pages=max_pages,
        )
        for url in pages.values()
    ]


def main(settings: Settings, args: argparse.Namespace) -> int:
    max_depth = settings.crawl_max_depth if args.max_depth is None else args.max_depth
    crawl_id = uuid.uuid4().hex
    try:
        requests = seed_requests(
            args.urls,
            crawl_id=crawl_id,
            max_depth=max_depth,
            allowed_domains=args.allow_domain,
            fetch_mode=args.fetch_mode,
            max_pages=args.max_pages,
        )
    except ValueError as exc:
        print(f"ctrlgpt seed: {exc}", file=sys.stderr)
        return 2
    bus.ensure_topics(settings, [topics.CRAWL_REQUESTS])
    producer = bus.make_producer(settings)
    for request in requests:
        bus.publish(producer, topics.CRAWL_REQUESTS, request)
    bus.flush_or_raise(producer)
    log.info(
        "seed.published",
        crawl_id=crawl_id,
        urls=[r.url for r in requests],
        max_depth=max_depth,
        fetch_mode=args.fetch_mode,
        max_pages=args.max_pages,
    )
    print(crawl_id)
    return 0
