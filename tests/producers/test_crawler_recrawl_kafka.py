"""Re-crawls: conditional GETs from remembered validators; an unchanged page is not published again.

Real Kafka, real sockets, both fetch modes (plain HTTP and Chromium).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from crawl_harness import (
    CrawlerThread,
    read_to_end,
    start_group_at_end,
    wait_until_caught_up,
)
from crawl_sites import Response, Site, fixed, html_page, serve

from ctrlgpt.settings import Settings
from producers.crawl_state import CrawlState
from producers.seed import seed_requests
from streams import bus, topics
from streams.records import CrawlRequested

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

ROBOTS = fixed((200, {"Content-Type": "text/plain"}, b"User-agent: *\nCrawl-delay: 0\n"))
ETAG = '"home-v1"'
LAST_MODIFIED = "Sun, 01 Nov 2026 10:00:00 GMT"


def _home(before: int, headers: dict[str, str]) -> Response:
    if headers.get("if-none-match") == ETAG:
        return 304, {"ETag": ETAG}, b""
    status, page_headers, body = html_page("Home", "/dated.html", "/plain.html", "/news.html")
    return status, {**page_headers, "ETag": ETAG}, body


def _dated(before: int, headers: dict[str, str]) -> Response:
    if headers.get("if-modified-since") == LAST_MODIFIED:
        return 304, {}, b""
    status, page_headers, body = html_page("Dated")
    return status, {**page_headers, "Last-Modified": LAST_MODIFIED}, body


def _site() -> Site:
    return Site(
        {
            "/robots.txt": ROBOTS,
            "/": _home,
            "/dated.html": _dated,
            "/plain.html": fixed(html_page("No validators, same every time")),
            "/news.html": lambda before, headers: html_page(f"News edition {before}"),
        }
    )


def _browser_site() -> Site:
    return Site({"/robots.txt": ROBOTS, "/": _home})


@dataclass
class Recrawl:
    settings: Settings
    site: Site
    browser_site: Site
    first: str
    second: str
    browser_first: str
    browser_second: str


def _publish(settings: Settings, requests: list[CrawlRequested]) -> None:
    producer = bus.make_producer(settings)
    for request in requests:
        bus.publish(producer, topics.CRAWL_REQUESTS, request)
    bus.flush_or_raise(producer)


@pytest.fixture(scope="module")
def recrawl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recrawl]:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("crawler-recrawl"), fetch_retries=0, crawl_delay_s=0.0, fetch_timeout_s=15.0
    )
    bus.ensure_topics(settings, [topics.CRAWL_REQUESTS, topics.PAGES_RAW, topics.dead_letter_topic("crawl")])
    group = f"test-crawler-recrawl-{uuid.uuid4().hex}"
    start_group_at_end(settings, group, topics.CRAWL_REQUESTS)
    ids = [uuid.uuid4().hex for _ in range(4)]
    with serve(_site(), _browser_site()) as (site, browser_site):
        running = CrawlerThread(settings, group)
        try:
            for crawl_id, browser_crawl_id in (
                (ids[0], ids[2]),
                (ids[1], ids[3]),
            ):  # a crawl, then one of the same sites
                _publish(
                    settings,
                    [
                        *seed_requests(
                            [site.url], crawl_id=crawl_id, max_depth=1, allowed_domains=[], fetch_mode="http"
                        ),
                        *seed_requests([browser_site.url], crawl_id=browser_crawl_id, max_depth=0, allowed_domains=[]),
                    ],
                )
                wait_until_caught_up(settings, group, topics.CRAWL_REQUESTS)
            # An explicit re-crawl of a URL the first crawl already visited.
            _publish(settings, [CrawlRequested(url=site.url, crawl_id=ids[0], source="recrawl", fetch_mode="http")])
            wait_until_caught_up(settings, group, topics.CRAWL_REQUESTS)
        finally:
            running.finish()
        yield Recrawl(settings, site, browser_site, *ids)


def _published(recrawl: Recrawl, crawl_id: str) -> list[str]:
    pages = read_to_end(recrawl.settings, topics.PAGES_RAW, lambda r: r.crawl_id == crawl_id)
    return sorted(str(page.url) for page in pages)


def _outcomes(recrawl: Recrawl, crawl_id: str) -> dict[str, int]:
    state = CrawlState(recrawl.settings.data_dir / "crawler" / "state.sqlite3")
    try:
        return state.outcomes(crawl_id)
    finally:
        state.close()


def test_the_second_crawl_sends_the_validators_of_the_first(recrawl: Recrawl) -> None:
    home = recrawl.site.hits_of("/")
    assert "if-none-match" not in home[0].headers and home[1].headers["if-none-match"] == ETAG
    dated = recrawl.site.hits_of("/dated.html")
    assert len(dated) == 2 and dated[1].headers["if-modified-since"] == LAST_MODIFIED


def test_only_the_page_that_changed_is_published_again(recrawl: Recrawl) -> None:
    url = recrawl.site.url
    assert _published(recrawl, recrawl.first) == sorted(
        [url, url + "dated.html", url + "plain.html", url + "news.html"]
    )
    assert _published(recrawl, recrawl.second) == [url + "news.html"]
    assert _outcomes(recrawl, recrawl.second) == {"unchanged": 3, "fetched": 1}


def test_an_explicit_recrawl_fetches_a_visited_url_conditionally(recrawl: Recrawl) -> None:
    home = recrawl.site.hits_of("/")
    assert len(home) == 3 and home[2].headers["if-none-match"] == ETAG
    assert _published(recrawl, recrawl.first).count(recrawl.site.url) == 1
    assert _outcomes(recrawl, recrawl.first) == {"fetched": 3, "unchanged": 1}


def test_the_browser_sends_the_validators_too_and_a_304_is_not_published(recrawl: Recrawl) -> None:
    home = [hit for hit in recrawl.browser_site.hits_of("/")]
    assert len(home) == 2 and home[1].headers.get("if-none-match") == ETAG
    assert _published(recrawl, recrawl.browser_first) == [recrawl.browser_site.url]
    assert _published(recrawl, recrawl.browser_second) == []
    assert _outcomes(recrawl, recrawl.browser_second) == {"unchanged": 1}
