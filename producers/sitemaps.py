"""Sitemaps (sitemaps.org protocol): where a site lists its pages, and reading them safely.

A sitemap is read as sites write them: XML `<urlset>`/`<sitemapindex>` with the 0.9 namespace,
another one or none; a text sitemap (one URL per line); an RSS 2.0 or Atom feed (the protocol
accepts both). Pure: the crawler fetches, this module says where to look and what a document lists.
"""

from __future__ import annotations

import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from lxml import etree
from protego import Protego

from producers.frontier import canonical_url, normalize_url, origin_of

__all__ = ["Sitemap", "SitemapError", "parse_sitemap", "sitemap_locations", "walk"]

# The protocol's cap on one sitemap, uncompressed: 50 MB (52,428,800 bytes); the crawler's default.
PROTOCOL_MAX_BYTES = 52_428_800
_ATOM_NS = "{http://www.w3.org/2005/Atom}"
# No entities, no DTDs, no network: a sitemap is untrusted input (billion laughs, XXE).
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


class SitemapError(ValueError):
    """A document that is not a readable sitemap."""


@dataclass(frozen=True)
class Sitemap:
    pages: list[str]  # the page URLs a urlset, text sitemap or feed lists, in their fetch form
    sitemaps: list[str]  # a <sitemapindex>'s child sitemaps, in their fetch form


def sitemap_locations(seed_url: str, robots: Protego) -> list[str]:
    """The sitemaps robots.txt names (`Sitemap:` lines), then the origin's conventional /sitemap.xml."""
    named = list(robots.sitemaps)
    locations = []
    for url in [*named, origin_of(seed_url) + "/sitemap.xml"]:
        try:
            locations.append(normalize_url(url))
        except ValueError:  # a malformed Sitemap: line is the site's mistake, not a reason to stop
            continue
    return list(dict.fromkeys(locations))


def parse_sitemap(body: bytes, *, max_bytes: int) -> Sitemap:
    """A sitemap, sitemap index, text sitemap or feed, gzipped or not; raises SitemapError saying why it
    cannot be read."""
    if body[:2] == b"\x1f\x8b":
        body = _gunzip(body, max_bytes)
    if not body.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<"):
        return Sitemap(_text_urls(body), [])
    try:
        root = etree.fromstring(body, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise SitemapError(f"not XML: {exc}") from exc
    kind = etree.QName(root).localname  # any namespace, or none: sites omit or misspell the 0.9 one
    if kind == "urlset":
        return Sitemap(_urls(_texts(root, "url", "loc")), [])
    if kind == "sitemapindex":
        return Sitemap([], _urls(_texts(root, "sitemap", "loc")))
    if kind == "rss":
        channel = root.find("channel")
        return Sitemap(_urls(_texts(root if channel is None else channel, "item", "link")), [])
    if kind == "feed":
        return Sitemap(_urls(_atom_links(root)), [])
    raise SitemapError(f"not a sitemap or feed: root element {root.tag!r}")


def _texts(parent: etree._Element, entry: str, field: str) -> list[str]:
    """The text of each `entry`'s `field` child, whatever their namespace."""
    return [
        child.text or ""
        for element in parent
        if isinstance(element.tag, str) and etree.QName(element).localname == entry
        for child in element
        if isinstance(child.tag, str) and etree.QName(child).localname == field
    ]


def _atom_links(feed: etree._Element) -> list[str]:
    """Each Atom entry's page: its `<link>` without a rel or with rel="alternate" (RFC 4287 4.2.7.2)."""
    return [
        link.get("href", "")
        for entry in feed.iterfind(f"{_ATOM_NS}entry")
        for link in entry.iterfind(f"{_ATOM_NS}link")
        if link.get("rel", "alternate") == "alternate"
    ]


def _text_urls(body: bytes) -> list[str]:
    """A text sitemap: UTF-8, one URL per line (sitemaps.org); a document with none is no sitemap."""
    try:
        lines = body.decode("utf-8-sig").splitlines()
    except UnicodeDecodeError as exc:
        raise SitemapError(f"text sitemap is not UTF-8: {exc.reason} at byte {exc.start}") from exc
    urls = _urls(lines)
    if not urls:
        raise SitemapError("not a sitemap: neither XML nor a line that is a URL")
    return urls


def _urls(raw: list[str]) -> list[str]:
    """The fetch forms of the http(s) URLs in `raw`, one per canonical URL; one bad entry does not spoil the others."""
    urls: dict[str, str] = {}
    for text in raw:
        try:
            url = normalize_url(text.strip())
        except ValueError:
            continue
        urls.setdefault(canonical_url(url), url)
    return list(urls.values())


def _gunzip(body: bytes, max_bytes: int) -> bytes:
    """Decompress at most `max_bytes`: a small gzip can expand to gigabytes."""
    inflater = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)
    try:
        data = inflater.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise SitemapError(f"broken gzip: {exc}") from exc
    if len(data) > max_bytes:
        raise SitemapError(f"sitemap over {max_bytes} bytes once decompressed")
    return data


def walk(
    start: list[str],
    fetch: Callable[[str], bytes],
    *,
    allowed: Callable[[str], bool],
    max_documents: int,
    max_pages: int,
    max_bytes: int,
) -> tuple[list[str], list[str]]:
    """The page URLs the sitemaps at `start` list, following indexes breadth first; bounded by
    `max_documents` read and `max_pages` collected. Returns them and one line per document not read.

    `fetch` returns a document's bytes or raises SitemapError; `allowed` keeps pages and child sitemaps in scope.
    """
    queue, queued = deque(start), set(start)
    pages: dict[str, None] = {}
    problems: list[str] = []
    read = 0
    while queue and read < max_documents and len(pages) < max_pages:
        location = queue.popleft()
        read += 1
        try:
            sitemap = parse_sitemap(fetch(location), max_bytes=max_bytes)
        except SitemapError as exc:
            problems.append(f"{location}: {exc}")
            continue
        pages.update((page, None) for page in sitemap.pages if allowed(page))
        for child in sitemap.sitemaps:
            if child not in queued and allowed(child):
                queued.add(child)
                queue.append(child)
    if queue:
        problems.append(f"{len(queue)} sitemaps not read: over {max_documents} documents or {max_pages} pages")
    return list(pages)[:max_pages], problems
