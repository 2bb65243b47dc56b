"""Sitemaps (sitemaps.org protocol): where a site lists its pages, and reading them safely.

Pure: the crawler fetches, this module says where to look and what a document lists.
"""

from __future__ import annotations

import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from urllib.robotparser import RobotFileParser

from lxml import etree

from producers.frontier import normalize_url, origin_of

__all__ = ["Sitemap", "SitemapError", "parse_sitemap", "sitemap_locations", "walk"]

_NS = "{http://www.sitemaps.org/schemas/sitemap/0.9}"
# No entities, no DTDs, no network: a sitemap is untrusted input (billion laughs, XXE).
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


class SitemapError(ValueError):
    """A document that is not a readable sitemap."""


@dataclass(frozen=True)
class Sitemap:
    pages: list[str]  # a <urlset>'s page URLs, normalized
    sitemaps: list[str]  # a <sitemapindex>'s child sitemaps, normalized


def sitemap_locations(seed_url: str, robots: RobotFileParser) -> list[str]:
    """The sitemaps robots.txt names (`Sitemap:` lines), then the origin's conventional /sitemap.xml."""
    named = robots.site_maps() or []
    locations = []
    for url in [*named, origin_of(seed_url) + "/sitemap.xml"]:
        try:
            locations.append(normalize_url(url))
        except ValueError:  # a malformed Sitemap: line is the site's mistake, not a reason to stop
            continue
    return list(dict.fromkeys(locations))


def parse_sitemap(body: bytes, *, max_bytes: int) -> Sitemap:
    """A sitemap or sitemap index, gzipped or not; raises SitemapError saying why it cannot be read."""
    if body[:2] == b"\x1f\x8b":
        body = _gunzip(body, max_bytes)
    try:
        root = etree.fromstring(body, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise SitemapError(f"not XML: {exc}") from exc
    if root.tag == f"{_NS}urlset":
        return Sitemap(_locs(root, "url"), [])
    if root.tag == f"{_NS}sitemapindex":
        return Sitemap([], _locs(root, "sitemap"))
    raise SitemapError(f"not a sitemap: root element {root.tag!r}")


def _locs(root: etree._Element, entry: str) -> list[str]:
    urls = []
    for loc in root.iterfind(f"{_NS}{entry}/{_NS}loc"):
        try:
            urls.append(normalize_url((loc.text or "").strip()))
        except ValueError:  # one bad <loc> does not spoil the others
            continue
    return list(dict.fromkeys(urls))


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
