"""`ctrlgpt crawler`: crawl requests -> pages (rendered by Chromium, or a plain GET) -> `PAGES_RAW`, plus new requests.

Per request: skip it if this crawl already visited the URL (its canonical form: unless it is a
re-crawl), obey robots.txt, wait out the origin's politeness delay or Retry-After pause, load the page
(`fetch_mode`: the one browser, or httpx), conditionally if the URL was fetched before, following
its redirects one hop at a time, each hop obeying robots.txt and waiting its origin's turn;
retry what may pass (network errors, timeouts, 5xx, 429) and dead-letter what cannot
(invalid URL, 4xx, non-HTML, robots-disallowed, too large, undecodable, redirect loops,
retries exhausted) with the reason. A page is published unless unchanged (304, or the same
HTML), with requests for its new in-scope links (and, for a seed, its site's sitemap
entries), and flushed before the visit is remembered and the batch committed.

A batch's requests are fetched at once by a pool of threads (browser pages are bounded by
`crawl_browser_pages`), at most `crawl_per_origin_concurrency` in flight per origin, each
origin's delay, Crawl-delay and Retry-After pauses holding across them; different origins
go in parallel. Outcomes are then published and remembered in the batch's order, on the
consuming thread, as before.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from urllib.parse import urljoin

import httpx
import structlog
from confluent_kafka import Producer
from protego import Protego

from ctrlgpt.lifecycle import stop_on_signals
from ctrlgpt.retry import Backoff
from ctrlgpt.settings import Settings
from producers import frontier, http_fetch, identity, sitemaps
from producers.browser import Browser, FetchError, Loaded
from producers.conditional import Validators, conditional_headers, validators_of
from producers.crawl_state import CrawlState
from producers.frontier import Verdict
from producers.politeness import Politeness, Unreachable
from producers.retry_after import HONOURED_STATUSES, retry_after_s
from streams import bus, groups, topics
from streams.bus import Received, ServiceUnavailable
from streams.records import CrawlRequested, PageFetched, Stage

__all__ = ["STAGE", "Crawler", "log_identity", "main", "run"]

log = structlog.get_logger()

STAGE: Stage = "crawl"
# A batch is committed only once all its pages are fetched; a small one keeps the
# worst case (every page timing out through all its retries) far below max.poll.interval.ms.
BATCH_SIZE = 5
# robots.txt is read again after this long, so a long-running crawler sees a site's changes.
ROBOTS_TTL_S = 3600.0
# An origin that could not be reached through all retries is not tried again for this long:
# its other queued requests (a site that is gone, say) are dead-lettered at once, not retried one by one.
UNREACHABLE_COOLDOWN_S = 300.0
# Under the 8 MiB message.max.bytes of the producers and the broker, leaving room for the record's other fields.
MAX_HTML_BYTES = 7 * 1024 * 1024
# Sitemap discovery reads at most this many documents (sitemaps and indexes) per seed (each at most
# `crawl_sitemap_max_bytes`).
MAX_SITEMAP_DOCUMENTS = 20
# Redirects followed from one request, as browsers do; one more is a loop.
MAX_REDIRECTS = 20
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# ... and spends at most this long on them, so that a batch of seeds stays within max.poll.interval.ms.
SITEMAP_TIME_BUDGET_S = 60.0
# How often a request waiting for its origin's turn looks whether the service is stopping.
TURN_POLL_S = 0.2
# Failures that say nothing answers at the origin, as opposed to one page failing.
_CONNECTION_ERRORS = frozenset({"NetworkError", "RobotsUnavailable"})


class _Stopping(Exception):
    """The service is stopping in the middle of a request: leave it uncommitted for the next start."""


@dataclass(frozen=True)
class _Failed:
    reason: str
    error_type: str
    attempts: int
    status: int | None = None
    retry_after_s: float | None = None


class _OriginDown(Exception):
    """The origin was found unreachable while this request waited for its turn."""


@dataclass(frozen=True)
class _Job:
    """A request to fetch: its URL (the fetch form), the canonical form it is remembered by, and what an earlier
    crawl remembered of it."""

    request: CrawlRequested
    url: str
    key: str
    previous: Validators | None
    bound: structlog.stdlib.BoundLogger


def batch_size(settings: Settings) -> int:
    """Requests per batch: enough to fill every browser page, small enough to finish within max.poll.interval.ms."""
    return max(BATCH_SIZE, settings.crawl_browser_pages)


class Crawler:
    def __init__(
        self,
        settings: Settings,
        browser: Browser,
        state: CrawlState,
        producer: Producer,
        http: httpx.Client,
        stop: threading.Event,
    ) -> None:
        self._settings = settings
        self._browser = browser
        self._state = state
        self._producer = producer
        self._http = http
        self._stop = stop
        self._fetchers = ThreadPoolExecutor(max_workers=batch_size(settings), thread_name_prefix="crawl-fetch")
        # One lock over the politeness state; waiting requests are woken when an origin's fetch ends.
        self._turns = threading.Condition()
        self._politeness = Politeness()
        self._unreachable = Unreachable(UNREACHABLE_COOLDOWN_S)
        self._robots: dict[str, tuple[Protego, float]] = {}
        self._robots_locks: dict[str, threading.Lock] = {}
        self._robots_locks_lock = threading.Lock()
        self._outcomes: Counter[str] = Counter()

    def close(self) -> None:
        self._fetchers.shutdown(wait=True)

    def write(self, batch: list[Received]) -> None:
        """`bus.consume`'s write: fetch the batch's requests at once, then publish and remember their outcomes in
        order; on stop, raise `ServiceUnavailable` so that the bus commits nothing of the batch (its requests done
        so far are remembered as visited, and skipped when the batch is read again)."""
        seen: set[tuple[str, str]] = set()
        jobs = [self._prepare(received, seen) for received in batch]
        fetches: list[Future[Loaded | _Failed] | None] = [
            self._fetchers.submit(self._fetch, job) if isinstance(job, _Job) else None for job in jobs
        ]
        try:
            for received, job, fetch in zip(batch, jobs, fetches, strict=True):
                if self._stop.is_set():
                    raise _Stopping
                if isinstance(job, _Failed):
                    self._dead_letter(received, job)
                elif isinstance(job, _Job):
                    assert fetch is not None
                    self._settle(received, job, fetch.result())
        except _Stopping as exc:
            raise ServiceUnavailable("stopping in the middle of a batch") from exc
        finally:  # no fetch outlives its batch: the pool's bound is the crawler's
            wait([fetch for fetch in fetches if fetch is not None])

    def _prepare(self, received: Received, seen: set[tuple[str, str]]) -> _Job | _Failed | None:
        """What to do with a request: fetch it, dead-letter it (invalid URL), or nothing (visited already)."""
        request = received.record
        assert isinstance(request, CrawlRequested)
        try:
            url = frontier.normalize_url(str(request.url))
        except ValueError as exc:
            return _Failed(f"invalid URL: {exc}", "InvalidUrl", 0)
        key = frontier.canonical_url(url)
        bound = log.bind(crawl_id=request.crawl_id, url=url, depth=request.depth)
        # Earlier in this batch counts as visited too: its visit is recorded only after the fetches.
        visited = (request.crawl_id, key) in seen or self._state.visited(request.crawl_id, key)
        if request.source != "recrawl" and visited:
            bound.info("crawl.already_visited")
            return None
        seen.add((request.crawl_id, key))
        return _Job(request, url, key, self._state.validators(key), bound)  # validators from any earlier crawl

    def _fetch(self, job: _Job) -> Loaded | _Failed:
        """On a pool thread: load the page, retrying what may pass; keeps track of origins that do not answer."""
        origin = frontier.origin_of(job.url)
        down = self._unreachable.reason(origin, time.monotonic())
        if down:
            return _Failed(down, "OriginUnreachable", 0)
        result = self._load_with_retries(job.url, job.request.fetch_mode, conditional_headers(job.previous), job.bound)
        if not isinstance(result, _Failed):
            self._unreachable.clear(origin)
        elif result.error_type in _CONNECTION_ERRORS:
            self._unreachable.mark(origin, result.reason, time.monotonic())
        return result

    def _settle(self, received: Received, job: _Job, result: Loaded | _Failed) -> None:
        if isinstance(result, _Failed):
            self._dead_letter(received, result)
            self._state.record_visit(job.request.crawl_id, job.key, outcome="dead-lettered", status=result.status)
            return
        self._publish_fetched(job.request, job.url, job.key, result, job.previous, job.bound)

    def _publish_fetched(
        self,
        request: CrawlRequested,
        url: str,
        key: str,
        loaded: Loaded,
        previous: Validators | None,
        bound: structlog.stdlib.BoundLogger,
    ) -> None:
        """Publish the page unless it is unchanged, then the requests it leads to; then remember the visit (by the
        page's canonical URL `key`)."""
        validators = _validators_after(loaded, previous)
        unchanged = previous is not None and validators.content_hash == previous.content_hash
        if not unchanged:
            page = PageFetched(
                url=url,
                final_url=loaded.final_url,
                crawl_id=request.crawl_id,
                depth=request.depth,
                status=loaded.status,
                content_type=loaded.content_type,
                html=loaded.html,
            )
            bus.publish(self._producer, topics.PAGES_RAW, page)
        sitemap_pages = self._sitemap_pages(request, url, bound) if request.source == "seed" else []
        requested = self._publish_requests(request, list(validators.links), sitemap_pages, bound)
        bus.flush_or_raise(self._producer)
        outcome = "unchanged" if unchanged else "fetched"
        self._state.record_visit(
            request.crawl_id, key, outcome=outcome, status=loaded.status, requested=requested, validators=validators
        )
        self._outcomes[outcome] += 1
        bound.info(
            f"crawl.{outcome}",
            status=loaded.status,
            ms=loaded.elapsed_ms,
            bytes=len(loaded.html),
            new_requests=len(requested),
            **{f"{outcome}_since_start": self._outcomes[outcome]},
        )

    def _dead_letter(self, received: Received, failed: _Failed) -> None:
        bus.send_dead_letter(
            self._producer,
            STAGE,
            source_topic=received.topic,
            value=received.value,
            key=received.key,
            partition=received.partition,
            offset=received.offset,
            reason=failed.reason,
            error_type=failed.error_type,
            attempts=failed.attempts,
        )
        bus.flush_or_raise(self._producer)
        log.warning(
            "crawl.dead_lettered", url=str(received.record.url), reason=failed.reason, error_type=failed.error_type
        )

    def _publish_requests(
        self, request: CrawlRequested, links: list[str], sitemap_pages: list[str], bound: structlog.stdlib.BoundLogger
    ) -> list[str]:
        """Publish the requests a page leads to; returns their canonical URLs, to remember as requested."""
        if request.depth >= request.max_depth:
            return []
        candidates = links + sitemap_pages
        wanted, over_budget = frontier.next_requests(
            request,
            links,
            known=self._state.known(request.crawl_id, map(frontier.canonical_url, candidates)),
            requested_per_host=self._state.requested_per_host(request.crawl_id, map(frontier.host_of, candidates)),
            max_pages=request.max_pages or self._settings.crawl_max_pages,
            sitemap_urls=sitemap_pages,
        )
        if over_budget:
            bound.warning(
                "crawl.page_budget_reached",
                links_not_requested=over_budget,
                max_pages=request.max_pages or self._settings.crawl_max_pages,
            )
        for link in wanted:
            bus.publish(self._producer, topics.CRAWL_REQUESTS, link)
        return [frontier.canonical_url(link.url) for link in wanted]

    def _load_with_retries(
        self, url: str, fetch_mode: str, headers: dict[str, str], bound: structlog.stdlib.BoundLogger
    ) -> Loaded | _Failed:
        attempts = 1 + self._settings.fetch_retries
        # The one retry policy's delays (ctrlgpt.retry): exponential from fetch_backoff_s, with jitter, so that
        # the requests of a batch that failed together do not come back to the site in step.
        backoff = Backoff(first_delay_s=self._settings.fetch_backoff_s)
        for attempt in range(1, attempts + 1):
            try:
                loaded = self._load_politely(url, fetch_mode, headers)
                verdict, why = frontier.fetch_verdict(loaded.status, loaded.content_type, conditional=bool(headers))
                if verdict is Verdict.UNCHANGED:
                    return loaded
                if verdict is Verdict.KEEP:
                    size = len(loaded.html.encode())
                    if size > MAX_HTML_BYTES:
                        why = f"page too large to publish: {size} bytes of HTML from {url}"
                        return _Failed(why, "TooLarge", attempt, loaded.status)
                    return loaded
                if verdict is Verdict.REJECT:
                    return _Failed(f"{why} from {url}", "Rejected", attempt, loaded.status)
                failure = self._http_failure(why, loaded, attempt)
            except _OriginDown as exc:
                return _Failed(str(exc), "OriginUnreachable", attempt - 1)
            except FetchError as exc:
                if not exc.transient:
                    return _Failed(exc.reason, exc.error_type, attempt)
                failure = _Failed(exc.reason, exc.error_type, attempt)
            if attempt < attempts:
                if failure.retry_after_s is not None:  # the host asked for a pause: every request to it waits
                    with self._turns:
                        self._politeness.pause(frontier.origin_of(url), time.monotonic() + failure.retry_after_s)
                    bound.warning(
                        "crawl.host_paused",
                        attempt=attempt,
                        of=attempts,
                        error=failure.reason,
                        retry_in_s=failure.retry_after_s,
                    )
                    continue
                delay = backoff.next_delay()
                bound.warning(
                    "crawl.retrying", attempt=attempt, of=attempts, error=failure.reason, retry_in_s=round(delay, 2)
                )
                if self._stop.wait(delay):
                    raise _Stopping
        return _Failed(
            f"{failure.reason} from {url}, still after {attempts} attempts",
            failure.error_type,
            attempts,
            failure.status,
        )

    def _http_failure(self, why: str, loaded: Loaded, attempt: int) -> _Failed:
        """A retryable HTTP answer; a 429/503 with a readable Retry-After says how long to wait."""
        wait_s = None
        if loaded.status in HONOURED_STATUSES:
            wait_s = retry_after_s(
                loaded.headers.get("retry-after"), now=datetime.now(UTC), cap_s=self._settings.retry_after_max_s
            )
        if wait_s is not None:
            why = f"{why} (Retry-After {wait_s:g}s)"
        return _Failed(why, "HttpError", attempt, loaded.status, wait_s)

    def _sitemap_pages(self, request: CrawlRequested, url: str, bound: structlog.stdlib.BoundLogger) -> list[str]:
        """The in-scope pages a seed's site lists in its sitemaps (robots.txt's, then /sitemap.xml)."""
        if request.depth >= request.max_depth:
            return []
        domains = frontier.scope_domains(request)
        deadline = time.monotonic() + SITEMAP_TIME_BUDGET_S
        pages, problems = sitemaps.walk(
            sitemaps.sitemap_locations(url, self._robots_for(url)),
            lambda location: self._fetch_sitemap(location, deadline),
            allowed=lambda page: frontier.in_scope(page, domains, request.depth + 1, request.max_depth),
            max_documents=MAX_SITEMAP_DOCUMENTS,
            max_pages=request.max_pages or self._settings.crawl_max_pages,
            max_bytes=self._settings.crawl_sitemap_max_bytes,
        )
        bound.info("crawl.sitemaps_read", pages=len(pages), not_read=problems)
        return pages

    def _fetch_sitemap(self, location: str, deadline: float) -> bytes:
        """A sitemap document; its redirects are followed one hop at a time, each in its origin's turn, as a page's."""
        hop = location
        for _ in range(MAX_REDIRECTS + 1):
            if time.monotonic() > deadline:
                raise sitemaps.SitemapError(
                    f"not read: over the {SITEMAP_TIME_BUDGET_S:g}s spent on this seed's sitemaps"
                )
            try:
                origin = self._take_turn(hop)
                try:
                    with self._http.stream("GET", hop, follow_redirects=False) as response:
                        target = _redirect_target(hop, response.status_code, response.headers.get("location"))
                        if target is None:
                            if response.status_code != 200:
                                raise sitemaps.SitemapError(f"HTTP {response.status_code}")
                            return http_fetch.read_capped(response, hop, self._settings.crawl_sitemap_max_bytes)
                finally:
                    self._end_turn(origin)
            except FetchError as exc:
                raise sitemaps.SitemapError(exc.reason) from exc
            except httpx.HTTPError as exc:
                raise sitemaps.SitemapError(f"network error: {exc!r}") from exc
            hop = target
        raise sitemaps.SitemapError(f"redirect loop: over {MAX_REDIRECTS} redirects")

    def _load_politely(self, url: str, fetch_mode: str, headers: dict[str, str]) -> Loaded:
        """Load `url`, following its redirects here rather than in the browser or httpx: each hop obeys robots.txt
        and waits its origin's turn like any request (a chain of redirects to one host is spaced by its delay)."""
        hop = url
        for _ in range(MAX_REDIRECTS + 1):
            loaded = self._load_hop(hop, fetch_mode, headers)
            target = _redirect_target(hop, loaded.status, loaded.headers.get("location"))
            if target is None:
                return loaded
            hop = target
        raise FetchError(
            f"redirect loop: over {MAX_REDIRECTS} redirects from {url}", transient=False, error_type="RedirectLoop"
        )

    def _load_hop(self, url: str, fetch_mode: str, headers: dict[str, str]) -> Loaded:
        """One request, redirects not followed, in the origin's turn."""
        origin = self._take_turn(url)
        try:
            down = self._unreachable.reason(origin, time.monotonic())
            if down:  # another request to the origin failed every attempt while this one waited
                raise _OriginDown(down)
            if fetch_mode == "http":
                return http_fetch.fetch(self._http, url, max_bytes=MAX_HTML_BYTES, headers=headers)
            return self._browser.load(url, headers)
        finally:
            self._end_turn(origin)

    def _take_turn(self, url: str) -> str:
        """Obey robots.txt, then wait until the origin has room under its concurrency cap and is past its delay or
        pause; returns the origin, whose turn `_end_turn` ends once fetched."""
        rules = self._robots_for(url)
        decision = frontier.robots_decision(rules, self._settings.user_agent, url)
        if not decision.allowed:
            raise FetchError(f"disallowed by robots.txt: {url}", transient=False, error_type="RobotsDisallowed")
        origin = frontier.origin_of(url)
        delay = max(self._settings.crawl_delay_s, decision.crawl_delay_s or 0.0)
        cap = self._settings.crawl_per_origin_concurrency
        with self._turns:
            while (wait_s := self._politeness.may_start(origin, delay, cap, time.monotonic())) != 0.0:
                if self._stop.is_set():
                    raise _Stopping
                self._turns.wait(TURN_POLL_S if wait_s is None else min(wait_s, TURN_POLL_S))
            self._politeness.start(origin, time.monotonic())
        return origin

    def _end_turn(self, origin: str) -> None:
        with self._turns:
            self._politeness.finish(origin, time.monotonic())
            self._turns.notify_all()

    def _robots_for(self, url: str) -> Protego:
        """The origin's robots.txt rules, read once per origin at a time (fetches run on several threads)."""
        origin = frontier.origin_of(url)
        with self._robots_locks_lock:
            lock = self._robots_locks.setdefault(origin, threading.Lock())
        with lock:
            return self._robots_cached_or_read(url, origin)

    def _robots_cached_or_read(self, url: str, origin: str) -> Protego:
        cached = self._robots.get(origin)
        if cached and time.monotonic() - cached[1] < ROBOTS_TTL_S:
            return cached[0]
        robots_url = frontier.robots_url(url)
        try:
            response = self._http.get(robots_url)
        except httpx.HTTPError as exc:
            raise FetchError(
                f"robots.txt unreachable at {robots_url}: {exc}", transient=True, error_type="RobotsUnavailable"
            ) from exc
        if response.status_code >= 500 or response.status_code == 429:
            raise FetchError(
                f"robots.txt answered HTTP {response.status_code} at {robots_url}",
                transient=True,
                error_type="RobotsUnavailable",
            )
        rules = frontier.parse_robots(response.status_code, response.text)
        self._robots[origin] = (rules, time.monotonic())
        log.info("crawl.robots_loaded", origin=origin, status=response.status_code)
        return rules


def _redirect_target(url: str, status: int, location: str | None) -> str | None:
    """Where a redirect from `url` leads (its fetch form), or None if the answer is no redirect to follow."""
    if status not in _REDIRECT_STATUSES or not location:
        return None
    try:
        return frontier.normalize_url(urljoin(url, location))
    except ValueError as exc:
        raise FetchError(
            f"redirect from {url} to an invalid URL {location!r}", transient=False, error_type="InvalidRedirect"
        ) from exc


def _validators_after(loaded: Loaded, previous: Validators | None) -> Validators:
    """A 304 keeps the remembered page (with any validators the server renewed); anything else is new."""
    if loaded.status == 304:
        assert previous is not None  # a 304 is kept only as the answer to a conditional request
        return replace(
            previous,
            etag=loaded.headers.get("etag", previous.etag),
            last_modified=loaded.headers.get("last-modified", previous.last_modified),
        )
    return validators_of(loaded.headers, loaded.html, frontier.extract_links(loaded.html, loaded.final_url))


def log_identity(settings: Settings) -> None:
    """Say at start how the crawler introduces itself, and warn if site owners could not tell who runs it."""
    agent = identity.user_agent(settings.user_agent, settings.crawl_contact_url)
    if settings.crawl_contact_url:
        log.info("crawler.identity", user_agent=agent)
        return
    log.warning(
        "crawler.no_contact_url",
        user_agent=agent,
        why="site owners cannot tell who runs this crawl or how to reach them: set CTRLGPT_CRAWL_CONTACT_URL to a "
        "page that says so; it goes in the User-Agent as (+URL)",
    )


def run(settings: Settings, stop: threading.Event, group: str = groups.CRAWLER) -> None:
    """Crawl until `stop` is set."""
    log_identity(settings)
    bus.ensure_topics(settings, [topics.CRAWL_REQUESTS, topics.PAGES_RAW, topics.dead_letter_topic(STAGE)])
    state = CrawlState(settings.data_dir / "crawler" / "state.sqlite3")
    # robots.txt follows its redirects within one fetch (RFC 9309 asks for at least five); pages and sitemaps
    # follow none here (see _load_politely, _fetch_sitemap).
    http = httpx.Client(
        headers={"User-Agent": identity.user_agent(settings.user_agent, settings.crawl_contact_url)},
        timeout=settings.fetch_timeout_s,
        follow_redirects=True,
    )
    producer = bus.make_producer(settings)
    browser = Browser(settings)
    crawler = Crawler(settings, browser, state, producer, http, stop)
    try:
        bus.consume(
            settings,
            group=group,
            topic=topics.CRAWL_REQUESTS,
            stage=STAGE,
            write=crawler.write,
            stop=stop,
            batch_size=batch_size(settings),
        )
    finally:
        crawler.close()
        browser.close()
        producer.flush(10)
        http.close()
        state.close()
        log.info("crawler.stopped")


def main(settings: Settings, args: argparse.Namespace) -> int:
    run(settings, stop_on_signals())
    return 0
