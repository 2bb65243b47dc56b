"""The crawl frontier's pure rules: URL normalization, scope, link extraction, robots.txt.

No I/O here: the crawler fetches, this module decides. URLs go through w3lib (the form a URL is
fetched in, and the canonical form a page is known by) and robots.txt through protego (RFC 9309).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from urllib.parse import urljoin, urlsplit, urlunsplit

import lxml.html
from lxml.etree import ParserError
from protego import Protego
from w3lib.url import canonicalize_url, safe_url_string

from streams.records import CrawlRequested

__all__ = [
    "RobotsDecision",
    "Verdict",
    "canonical_url",
    "extract_links",
    "fetch_verdict",
    "host_of",
    "in_scope",
    "is_html",
    "next_requests",
    "normalize_url",
    "origin_of",
    "parse_robots",
    "robots_decision",
    "robots_url",
    "scope_domains",
]

_DEFAULT_PORTS = {"http": 80, "https": 443}
_HTML_TYPES = ("text/html", "application/xhtml+xml")
# One DNS label in ASCII (after IDNA); underscores occur in real host names, so they pass.
_LABEL = re.compile(r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?")


def normalize_url(url: str) -> str:
    """The form a URL is fetched in: w3lib's `safe_url_string` (percent-encoded as a browser sends it, the host
    in IDNA), lowercase scheme and host, no fragment or default port, dot segments resolved. The query stays as
    written (`?flag` is not `?flag=` on the wire); `canonical_url` is what tells two spellings of a page apart.

    Raises ValueError for anything that is not an absolute http(s) URL with a valid host and port.
    """
    try:
        parts = urlsplit(safe_url_string(url.strip()))
    except ValueError as exc:  # a bracketed host that is no IP address
        raise ValueError(f"invalid URL {url!r}: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"not an absolute http(s) URL: {url!r}")
    host = parts.hostname.lower()  # urlsplit already lowercases; explicit because it is the rule
    if not _valid_host(host):
        raise ValueError(f"invalid host {host!r} in URL {url!r}")
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"invalid port in URL {url!r}") from exc
    if port == 0:
        raise ValueError(f"invalid port 0 in URL {url!r}")
    netloc = host if port is None or port == _DEFAULT_PORTS[scheme] else f"{host}:{port}"
    if parts.username or parts.password:
        userinfo = parts.username or ""
        if parts.password:
            userinfo += f":{parts.password}"
        netloc = f"{userinfo}@{netloc}"
    return urlunsplit((scheme, netloc, _without_dot_segments(parts.path) or "/", parts.query, ""))


def _without_dot_segments(path: str) -> str:
    """RFC 3986 5.2.4: `.` and `..` segments resolved, never above the root."""
    segments = path.split("/")
    kept: list[str] = []
    for segment in segments:
        if segment == "..":
            if len(kept) > 1:
                kept.pop()
        elif segment != ".":
            kept.append(segment)
    if segments[-1] in (".", ".."):  # `/a/b/..` is the directory `/a/`
        kept.append("")
    return "/".join(kept)


def canonical_url(url: str) -> str:
    """The one spelling a page is known by, to de-duplicate on: w3lib's `canonicalize_url` of the fetch form
    (sorted query, `?flag` and `?flag=` alike, `café` and `caf%C3%A9` alike). Raises ValueError like
    `normalize_url`."""
    return canonicalize_url(normalize_url(url), keep_blank_values=True)


def _valid_host(host: str) -> bool:
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return False
        return True
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        return False
    return all(_LABEL.fullmatch(label) for label in ascii_host.removesuffix(".").split("."))


def host_of(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


def origin_of(url: str) -> str:
    """scheme://host[:port]: the unit robots.txt and politeness delays apply to."""
    parts = urlsplit(normalize_url(url))
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def scope_domains(request: CrawlRequested) -> list[str]:
    """Domains a request's links may stay within; carried on to the links' own requests.

    A seed is scoped to its own host plus any allowed domains; a link request carries
    its seed's list (an empty list on a link falls back to its own host).
    """
    domains = [d.lower().strip(".") for d in request.allowed_domains]
    if request.source != "link" or not domains:
        domains.insert(0, host_of(request.url))
    return list(dict.fromkeys(domains))


def in_scope(url: str, domains: Iterable[str], depth: int, max_depth: int) -> bool:
    """A URL is in scope at `depth` if its host is one of `domains` (or a subdomain) and depth <= max_depth."""
    if depth > max_depth:
        return False
    host = host_of(url)
    return any(host == d or host.endswith("." + d) for d in domains)


def extract_links(html: str, base_url: str) -> list[str]:
    """Absolute http(s) links of a page in their fetch form, in page order, one per canonical URL.

    Relative links resolve against `<base href>` when the page has one, else `base_url`.
    """
    try:
        doc = lxml.html.fromstring(html)
    except (ParserError, ValueError):  # empty or undecodable document: it has no links
        return []
    base_href = next(iter(doc.xpath("//base/@href")), None)
    base = urljoin(base_url, base_href.strip()) if base_href else base_url
    links: dict[str, str] = {}  # canonical URL -> its first fetch form
    for href in doc.xpath("//a/@href | //area/@href"):
        href = href.strip()
        if not href or href.startswith("#"):
            continue
        try:
            link = normalize_url(urljoin(base, href))
        except ValueError:  # mailto:, javascript:, tel:, malformed: not pages to crawl
            continue
        links.setdefault(canonical_url(link), link)
    return list(links.values())


def robots_url(url: str) -> str:
    return origin_of(url) + "/robots.txt"


def parse_robots(status: int, text: str) -> Protego:
    """The rules of a robots.txt answer, per RFC 9309 (protego: the longest matching rule wins, `*` and `$`
    wildcards, fractional Crawl-delay): a 4xx means no rules (allow everything).

    A 5xx is not a rule at all: the caller must retry it, so it is refused here.
    """
    if status >= 500:
        raise ValueError(f"robots.txt answered {status}: retry, do not guess")
    return Protego.parse(text if 200 <= status < 300 else "")


@dataclass(frozen=True)
class RobotsDecision:
    allowed: bool
    crawl_delay_s: float | None


def robots_decision(rules: Protego, user_agent: str, url: str) -> RobotsDecision:
    delay = rules.crawl_delay(user_agent)
    return RobotsDecision(rules.can_fetch(url, user_agent), float(delay) if delay is not None else None)


def is_html(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower() in _HTML_TYPES


class Verdict(Enum):
    KEEP = "keep"  # a page to publish
    UNCHANGED = "unchanged"  # 304: the page is as it was when last fetched
    RETRY = "retry"  # the server may answer better later
    REJECT = "reject"  # it will never be a page to publish


def fetch_verdict(status: int, content_type: str, *, conditional: bool = False) -> tuple[Verdict, str]:
    """What to do with a loaded response, and why (the reason ends up in a dead letter).

    A 304 only answers a conditional request: `conditional` says whether one was sent.
    """
    if status == 304 and conditional:
        return Verdict.UNCHANGED, "HTTP 304 not modified"
    if status >= 500 or status == 429:
        return Verdict.RETRY, f"HTTP {status}"
    if not 200 <= status < 300:
        return Verdict.REJECT, f"HTTP {status}"
    if not is_html(content_type):
        return Verdict.REJECT, f"not HTML: content type {content_type or 'missing'!r}"
    return Verdict.KEEP, f"HTTP {status}"


def next_requests(
    request: CrawlRequested,
    links: Iterable[str],
    *,
    known: set[str],
    requested_per_host: Mapping[str, int],
    max_pages: int,
    sitemap_urls: Iterable[str] = (),
) -> tuple[list[CrawlRequested], int]:
    """The requests a fetched page leads to, its links then its site's sitemap URLs: in scope, one
    level deeper, not requested yet (`known`: canonical URLs), within `max_pages` requests per host and
    crawl. Returns them and how many the budget cut.
    """
    depth = request.depth + 1
    domains = scope_domains(request)
    counts = dict(requested_per_host)
    seen = set(known) | {canonical_url(request.url)}  # a page's link to itself is not new
    wanted, over_budget = [], 0
    candidates = [*((url, "link") for url in links), *((url, "sitemap") for url in sitemap_urls)]
    for url, source in candidates:
        canonical = canonical_url(url)
        if canonical in seen or not in_scope(url, domains, depth, request.max_depth):
            continue
        host = host_of(url)
        if counts.get(host, 0) >= max_pages:
            over_budget += 1
            continue
        counts[host] = counts.get(host, 0) + 1
        seen.add(canonical)
        wanted.append(
            CrawlRequested(
                url=url,
                crawl_id=request.crawl_id,
                depth=depth,
                max_depth=request.max_depth,
                allowed_domains=domains,
                source=source,
                fetch_mode=request.fetch_mode,
                max_pages=request.max_pages,
            )
        )
    return wanted, over_budget
