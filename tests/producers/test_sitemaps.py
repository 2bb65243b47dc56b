"""Sitemap locations and parsing: urlsets, indexes, gzip, and what is refused."""

from __future__ import annotations

import gzip
from collections.abc import Callable

import pytest

from ctrlgpt.settings import Settings
from producers import frontier
from producers.sitemaps import PROTOCOL_MAX_BYTES, SitemapError, parse_sitemap, sitemap_locations, walk
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


def test_sitemap_urls_keep_their_fetch_form_one_per_canonical_url() -> None:
    body = _urlset("http://site.test/./x/../caf%C3%A9?flag", "http://site.test/café?flag=", "http://site.test/b?flag")
    assert parse_sitemap(body, max_bytes=10_000).pages == ["http://site.test/caf%C3%A9?flag", "http://site.test/b?flag"]


@pytest.mark.parametrize(
    "root",
    [
        "<urlset>",  # no namespace
        '<urlset xmlns="http://www.google.com/schemas/sitemap/0.84">',  # an older one
        '<s:urlset xmlns:s="http://www.sitemaps.org/schemas/sitemap/0.9">',  # a prefixed one
    ],
)
def test_a_urlset_is_read_whatever_its_namespace(root: str) -> None:
    tag = root.split()[0].removeprefix("<").removesuffix(">")
    prefix = tag.partition(":")[0] + ":" if ":" in tag else ""
    body = f"{root}<{prefix}url><{prefix}loc>http://site.test/a</{prefix}loc></{prefix}url></{tag}>".encode()
    assert parse_sitemap(body, max_bytes=10_000).pages == ["http://site.test/a"]


def test_an_index_without_namespace_lists_its_sitemaps() -> None:
    body = b"<sitemapindex><sitemap><loc>http://site.test/s1.xml</loc></sitemap></sitemapindex>"
    assert parse_sitemap(body, max_bytes=10_000).sitemaps == ["http://site.test/s1.xml"]


def test_a_text_sitemap_lists_one_url_per_line() -> None:
    body = "\ufeffhttp://site.test/a\r\n\nhttp://site.test/café\nnot a url\nhttp://site.test/a\n".encode()
    assert parse_sitemap(body, max_bytes=10_000).pages == ["http://site.test/a", "http://site.test/caf%C3%A9"]
    assert parse_sitemap(gzip.compress(body), max_bytes=10_000).pages == [
        "http://site.test/a",
        "http://site.test/caf%C3%A9",
    ]


def test_an_rss_feed_lists_its_items_links() -> None:
    body = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>t</title><link>http://site.test/</link>
    <item><title>one</title><link>http://site.test/one.html</link></item>
    <item><title>two</title><link> http://site.test/two.html </link></item></channel></rss>"""
    assert parse_sitemap(body, max_bytes=10_000).pages == ["http://site.test/one.html", "http://site.test/two.html"]


def test_an_atom_feed_lists_its_entries_alternate_links() -> None:
    body = b"""<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>t</title>
    <link rel="self" href="http://site.test/feed.atom"/>
    <entry><title>one</title><link href="http://site.test/one.html"/><link rel="edit" href="http://site.test/e1"/></entry>
    <entry><title>two</title><link rel="alternate" href="http://site.test/two.html"/></entry></feed>"""
    assert parse_sitemap(body, max_bytes=10_000).pages == ["http://site.test/one.html", "http://site.test/two.html"]


def test_the_default_size_cap_is_the_protocols_50_mb() -> None:
    assert Settings().crawl_sitemap_max_bytes == PROTOCOL_MAX_BYTES == 50 * 1024 * 1024


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
        (b"no url here\nnor here", "not a sitemap"),
        (b"http://site.test/\xff", "not UTF-8"),
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
