"""Sitemap discovery: robots.txt's `Sitemap:` lines, indexes and /sitemap.xml lead to `source="sitemap"` requests;
sitemaps without the 0.9 namespace, text sitemaps and RSS/Atom feeds count, one request per page however spelled.

Real Kafka, a local site on its own origin, plain-HTTP fetches.
"""

from __future__ import annotations

import uuid
from collections import Counter

import pytest
from crawl_harness import (
    CrawlerThread,
    read_to_end,
    start_group_at_end,
    wait_until_caught_up,
)
from crawl_sites import Response, Site, fixed, html_page, serve

from ctrlgpt.settings import Settings
from producers.seed import seed_requests
from streams import bus, topics

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

NS = 'xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"'


def _xml(root: str, entry: str, *urls: str) -> Response:
    entries = "".join(f"<{entry}><loc>{url}</loc></{entry}>" for url in urls)
    return 200, {"Content-Type": "application/xml"}, f'<?xml version="1.0"?><{root} {NS}>{entries}</{root}>'.encode()


def _robots(before: int, headers: dict[str, str]) -> Response:
    maps = "".join(f"Sitemap: http://{headers['host']}/maps/{name}\n" for name in ("index.xml", "list.txt", "feed.rss"))
    return 200, {"Content-Type": "text/plain"}, f"User-agent: *\nCrawl-delay: 0\n{maps}".encode()


def _bare(before: int, headers: dict[str, str]) -> Response:
    """No namespace, and spellings with dot segments: one of a page listed elsewhere, one of a new page."""
    site = f"http://{headers['host']}"
    body = f"<urlset><url><loc>{site}/maps/../from-map-1.html</loc></url><url><loc>{site}/./from-bare.html</loc></url></urlset>"
    return 200, {"Content-Type": "application/xml"}, body.encode()


def _text(before: int, headers: dict[str, str]) -> Response:
    return 200, {"Content-Type": "text/plain"}, f"http://{headers['host']}/from-text.html\n".encode()


def _feed(before: int, headers: dict[str, str]) -> Response:
    item = f"<item><title>new</title><link>http://{headers['host']}/from-feed.html</link></item>"
    return 200, {"Content-Type": "application/rss+xml"}, f'<rss version="2.0"><channel>{item}</channel></rss>'.encode()


def _index(before: int, headers: dict[str, str]) -> Response:
    site = f"http://{headers['host']}"
    return _xml(
        "sitemapindex", "sitemap", f"{site}/maps/pages.xml", f"{site}/maps/bare.xml", "http://elsewhere.test/x.xml"
    )


def _pages(before: int, headers: dict[str, str]) -> Response:
    site = f"http://{headers['host']}"
    return _xml(
        "urlset",
        "url",
        f"{site}/from-map-1.html",
        f"{site}/from-map-2.html",
        f"{site}/linked.html",
        "http://elsewhere.test/out.html",
    )


def _conventional(before: int, headers: dict[str, str]) -> Response:
    return _xml("urlset", "url", f"http://{headers['host']}/conventional.html")


def test_sitemap_pages_are_requested_once_in_scope_and_fetched(tmp_path_factory: pytest.TempPathFactory) -> None:
    settings = Settings(data_dir=tmp_path_factory.mktemp("crawler-sitemaps"), fetch_retries=0, crawl_delay_s=0.0)
    bus.ensure_topics(settings, [topics.CRAWL_REQUESTS, topics.PAGES_RAW, topics.dead_letter_topic("crawl")])
    group = f"test-crawler-sitemaps-{uuid.uuid4().hex}"
    start_group_at_end(settings, group, topics.CRAWL_REQUESTS)
    site = Site(
        {
            "/robots.txt": _robots,
            "/maps/index.xml": _index,
            "/maps/pages.xml": _pages,
            "/maps/bare.xml": _bare,
            "/maps/list.txt": _text,
            "/maps/feed.rss": _feed,
            "/sitemap.xml": _conventional,
            "/": fixed(html_page("Home", "/linked.html")),
            **{
                path: fixed(html_page(path))
                for path in (
                    "/linked.html",
                    "/from-map-1.html",
                    "/from-map-2.html",
                    "/conventional.html",
                    "/from-bare.html",
                    "/from-text.html",
                    "/from-feed.html",
                )
            },
        }
    )
    crawl_id = uuid.uuid4().hex
    with serve(site):
        producer = bus.make_producer(settings)
        for request in seed_requests([site.url], crawl_id=crawl_id, max_depth=1, allowed_domains=[], fetch_mode="http"):
            bus.publish(producer, topics.CRAWL_REQUESTS, request)
        bus.flush_or_raise(producer)
        running = CrawlerThread(settings, group)
        wait_until_caught_up(settings, group, topics.CRAWL_REQUESTS)
        running.finish()

    requests = read_to_end(settings, topics.CRAWL_REQUESTS, lambda r: r.crawl_id == crawl_id)
    sources = {str(r.url).removeprefix(site.url.rstrip("/")): r.source for r in requests}
    assert Counter(str(r.url) for r in requests).most_common(1)[0][1] == 1, "a URL was requested twice"
    assert sources == {
        "/": "seed",
        "/linked.html": "link",
        "/from-map-1.html": "sitemap",
        "/from-map-2.html": "sitemap",
        "/conventional.html": "sitemap",
        "/from-bare.html": "sitemap",
        "/from-text.html": "sitemap",
        "/from-feed.html": "sitemap",
    }
    assert all(r.depth == 1 and r.fetch_mode == "http" for r in requests if r.source == "sitemap")
    pages = read_to_end(settings, topics.PAGES_RAW, lambda r: r.crawl_id == crawl_id)
    assert {str(page.url).removeprefix(site.url.rstrip("/")) for page in pages} == set(sources)
