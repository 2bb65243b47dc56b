"""Sitemap locations and parsing: urlsets, indexes, gzip, and what is refused."""

from __future__ import annotations

import gzip
from collections.abc import Callable

import pytest

from producers import frontier
from producers.sitemaps import SitemapError, parse_sitemap, sitemap_locations, walk
from streams.records import CrawlRequested

NS = 'xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"'
URLSET = f"""<?xml version="1.0" encoding="UTF-8"?>
<urlset {NS}><url><loc> http://Site.test/a#x </loc></url><url><loc>not a url</loc></url>
<url><loc>http://site.test/b</loc><lastmod>2026-01-01</lastmod></url><url><loc>http://site.test/a</loc></url></urlset>""".encode()


def test_robots_sitemaps_come_first_then_the_conventional_one() -> None:
    robots = frontier.parse_robots(200, "Sitemap: http://site.test/maps/one.xml\nSitemap: ::bad::\nUser-agent: *\n")
    assert sitemap_locations("http://site.test/start", robots) == [
        "http://site.test/maps/one.xml",
        "http://site.test/sitemap.xml",
    ]
    assert sitemap_locations("http://site.test:8080/", frontier.parse_robots(404, "")) == [
        "http://site.test:8080/sitemap.xml"
    ]


def test_a_urlset_lists_its_pages_normalized_without_duplicates_or_bad_locs() -> None:
    sitemap = parse_sitemap(URLSET, max_bytes=10_000)
    assert sitemap.pages == ["http://site.test/a", "http://site.test/b"] and sitemap.sitemaps == []


def test_an_index_lists_its_sitemaps() -> None:
    body = f"<sitemapindex {NS}><sitemap><loc>http://site.test/s1.xml</loc></sitemap></sitemapindex>".encode()
    assert parse_sitemap(body, max_bytes=10_000).sitemaps == ["http://site.test/s1.xml"]


def test_a_gzipped_sitemap_is_read_within_its_bound() -> None:
    assert parse_sitemap(gzip.compress(URLSET), max_bytes=10_000).pages == ["http://site.test/a", "http://site.test/b"]
    with pytest.raises(SitemapError, match="over 100 bytes"):
        parse_sitemap(gzip.compress(URLSET), max_bytes=100)


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"<html><body>404</body></html>", "not a sitemap"),
        (b"<urlset", "not XML"),
        (b"\x1f\x8bnot gzip", "broken gzip"),
    ],
)
def test_what_is_not_a_sitemap_is_refused_with_why(body: bytes, why: str) -> None:
    with pytest.raises(SitemapError, match=why):
        parse_sitemap(body, max_bytes=10_000)


def test_entities_are_not_expanded() -> None:
    body = (
        b'<?xml version="1.0"?><!DOCTYPE u [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        b'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><url><loc>http://site.test/&e;</loc></url></urlset>'
    )
    assert all("root" not in page for page in parse_sitemap(body, max_bytes=10_000).pages)


def test_sitemap_urls_become_sitemap_requests_after_the_links_within_the_budget() -> None:
    seed = CrawlRequested(url="http://site.test/", crawl_id="c", max_pages=3, fetch_mode="http")
    wanted, cut = frontier.next_requests(
        seed,
        ["http://site.test/a"],
        known=set(),
        requested_per_host={},
        max_pages=3,
        sitemap_urls=[
            "http://site.test/a",
            "http://site.test/b",
            "http://elsewhere.test/c",
            "http://site.test/d",
            "http://site.test/e",
        ],
    )
    assert [(str(r.url), r.source) for r in wanted] == [
        ("http://site.test/a", "link"),
        ("http://site.test/b", "sitemap"),
        ("http://site.test/d", "sitemap"),
    ]
    assert cut == 1 and all(r.depth == 1 and r.fetch_mode == "http" for r in wanted)


def _urlset(*urls: str) -> bytes:
    return f"<urlset {NS}>{''.join(f'<url><loc>{u}</loc></url>' for u in urls)}</urlset>".encode()


def _index(*urls: str) -> bytes:
    return f"<sitemapindex {NS}>{''.join(f'<sitemap><loc>{u}</loc></sitemap>' for u in urls)}</sitemapindex>".encode()


def _fetcher(documents: dict[str, bytes]) -> Callable[[str], bytes]:
    def fetch(url: str) -> bytes:
        if url not in documents:
            raise SitemapError("HTTP 404")
        return documents[url]

    return fetch


def _on_site(url: str) -> bool:
    return frontier.host_of(url) == "site.test"


def test_walk_follows_indexes_keeps_scope_and_reports_what_it_could_not_read() -> None:
    documents = {
        "http://site.test/index.xml": _index(
            "http://site.test/a.xml",
            "http://other.test/x.xml",
            "http://site.test/gone.xml",
            "http://site.test/index.xml",
        ),
        "http://site.test/a.xml": _urlset("http://site.test/1", "http://other.test/2", "http://site.test/3"),
    }
    pages, problems = walk(
        ["http://site.test/index.xml", "http://site.test/sitemap.xml"],
        _fetcher(documents),
        allowed=_on_site,
        max_documents=10,
        max_pages=100,
        max_bytes=10_000,
    )
    assert pages == ["http://site.test/1", "http://site.test/3"]
    assert problems == ["http://site.test/sitemap.xml: HTTP 404", "http://site.test/gone.xml: HTTP 404"]


def test_walk_is_bounded_in_documents_and_pages() -> None:
    documents = {f"http://site.test/{i}.xml": _index(f"http://site.test/{i + 1}.xml") for i in range(100)}
    pages, problems = walk(
        ["http://site.test/0.xml"],
        _fetcher(documents),
        allowed=_on_site,
        max_documents=5,
        max_pages=100,
        max_bytes=10_000,
    )
    assert pages == [] and problems == ["1 sitemaps not read: over 5 documents or 100 pages"]
    many = {"http://site.test/s.xml": _urlset(*(f"http://site.test/{i}" for i in range(50)))}
    pages, _ = walk(
        ["http://site.test/s.xml"], _fetcher(many), allowed=_on_site, max_documents=5, max_pages=7, max_bytes=10_000
    )
    assert pages == [f"http://site.test/{i}" for i in range(7)]
