"""`ctrlgpt crawler`: crawl requests -> pages rendered by Chromium -> `PAGES_RAW`, plus link requests.

Per request: skip it if this crawl already visited the URL, obey robots.txt, wait out
the host's politeness delay, load the page in the one browser, retry what may pass
(network errors, timeouts, 5xx, 429) with exponential backoff, and dead-letter what
cannot (4xx, non-HTML, robots-disallowed, retries exhausted) with the reason. A
fetched page is published, with requests for its new in-scope links, and flushed
before the visit is remembered and the batch committed.
"""

from __future__ import annotations

import argparse
import threading
import time
from dataclasses import dataclass
from urllib.robotparser import RobotFileParser

import httpx
import structlog
from confluent_kafka import Producer

from ctrlgpt.lifecycle import stop_on_signals
from ctrlgpt.settings import Settings
from producers import frontier
from producers.browser import Browser, FetchError, Loaded
from producers.crawl_state import CrawlState
from producers.frontier import Verdict
from streams import bus, topics
from streams.bus import Received
from streams.records import CrawlRequested, PageFetched

__all__ = ["STAGE", "Politeness", "Unreachable", "Crawler", "run", "main"]

log = structlog.get_logger()

STAGE = "crawl"
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


class Politeness:
    """When each origin may be fetched next: at least `delay` after its previous fetch."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}

    def wait_s(self, origin: str, delay: float, now: float) -> float:
        last = self._last.get(origin)
        return 0.0 if last is None else max(0.0, last + delay - now)

    def mark(self, origin: str, now: float) -> None:
        self._last[origin] = now


class Unreachable:
    """Origins that recently failed every attempt to connect, and why."""

    def __init__(self, cooldown_s: float) -> None:
        self._cooldown_s = cooldown_s
        self._down: dict[str, tuple[float, str]] = {}

    def mark(self, origin: str, reason: str, now: float) -> None:
        self._down[origin] = (now + self._cooldown_s, reason)

    def clear(self, origin: str) -> None:
        self._down.pop(origin, None)

    def reason(self, origin: str, now: float) -> str | None:
        """Why `origin` is not worth trying now, or None if it is."""
        until, why = self._down.get(origin, (0.0, ""))
        return f"{origin} unreachable {until - now:.0f}s more after: {why}" if now < until else None


class Crawler:
    def __init__(self, settings: Settings, browser: Browser, state: CrawlState, producer: Producer,
                 http: httpx.Client, stop: threading.Event) -> None:
        self._settings = settings
        self._browser = browser
        self._state = state
        self._producer = producer
        self._http = http
        self._stop = stop
        self._politeness = Politeness()
        self._unreachable = Unreachable(UNREACHABLE_COOLDOWN_S)
        self._robots: dict[str, tuple[RobotFileParser, float]] = {}

    def write(self, batch: list[Received]) -> None:
        """`bus.consume`'s write: handle each request; on stop, return with the rest uncommitted."""
        try:
            for received in batch:
                if self._stop.is_set():
                    return
                self._handle(received)
        except _Stopping:
            return

    def _handle(self, received: Received) -> None:
        request = received.record
        assert isinstance(request, CrawlRequested)
        url = frontier.normalize_url(request.url)
        bound = log.bind(crawl_id=request.crawl_id, url=url, depth=request.depth)
        if self._state.visited(request.crawl_id, url):
            bound.info("crawl.already_visited")
            return
        origin = frontier.origin_of(url)
        down = self._unreachable.reason(origin, time.monotonic())
        result = _Failed(down, "OriginUnreachable", 0) if down else self._load_with_retries(url, bound)
        if isinstance(result, _Failed):
            if result.error_type in _CONNECTION_ERRORS:
                self._unreachable.mark(origin, result.reason, time.monotonic())
            bus.send_dead_letter(
                self._producer, STAGE, source_topic=received.topic, value=received.value, key=received.key,
                partition=received.partition, offset=received.offset, reason=result.reason,
                error_type=result.error_type, attempts=result.attempts,
            )
            bus.flush_or_raise(self._producer)
            self._state.record_visit(request.crawl_id, url, outcome="dead-lettered", status=result.status)
            return
        self._unreachable.clear(origin)
        page = PageFetched(
            url=url, final_url=result.final_url, crawl_id=request.crawl_id, depth=request.depth,
            status=result.status, content_type=result.content_type, html=result.html,
        )
        bus.publish(self._producer, topics.PAGES_RAW, page)
        links = self._publish_links(request, result, bound)
        bus.flush_or_raise(self._producer)
        self._state.record_visit(request.crawl_id, url, outcome="fetched", status=result.status, requested=links)
        bound.info("crawl.fetched", status=result.status, ms=result.elapsed_ms, bytes=len(result.html), new_links=len(links))

    def _publish_links(self, request: CrawlRequested, loaded: Loaded, bound: structlog.stdlib.BoundLogger) -> list[str]:
        if request.depth >= request.max_depth:
            return []
        links = frontier.extract_links(loaded.html, loaded.final_url)
        wanted, over_budget = frontier.next_requests(
            request, links,
            known=self._state.known(request.crawl_id, links),
            requested_per_host=self._state.requested_per_host(request.crawl_id, map(frontier.host_of, links)),
            max_pages=self._settings.crawl_max_pages,
        )
        if over_budget:
            bound.warning("crawl.page_budget_reached", links_not_requested=over_budget, max_pages=self._settings.crawl_max_pages)
        for link in wanted:
            bus.publish(self._producer, topics.CRAWL_REQUESTS, link)
        return [link.url for link in wanted]

    def _load_with_retries(self, url: str, bound: structlog.stdlib.BoundLogger) -> Loaded | _Failed:
        attempts = 1 + self._settings.fetch_retries
        for attempt in range(1, attempts + 1):
            try:
                loaded = self._load_politely(url)
                verdict, why = frontier.fetch_verdict(loaded.status, loaded.content_type)
                if verdict is Verdict.KEEP:
                    size = len(loaded.html.encode())
                    if size > MAX_HTML_BYTES:
                        why = f"page too large to publish: {size} bytes of HTML from {url}"
                        return _Failed(why, "TooLarge", attempt, loaded.status)
                    return loaded
                if verdict is Verdict.REJECT:
                    return _Failed(f"{why} from {url}", "Rejected", attempt, loaded.status)
                failure = _Failed(why, "HttpError", attempt, loaded.status)
            except FetchError as exc:
                if not exc.transient:
                    return _Failed(exc.reason, exc.error_type, attempt)
                failure = _Failed(exc.reason, exc.error_type, attempt)
            if attempt < attempts:
                delay = self._settings.fetch_backoff_s * 2 ** (attempt - 1)
                bound.warning("crawl.retrying", attempt=attempt, of=attempts, error=failure.reason, retry_in_s=delay)
                if self._stop.wait(delay):
                    raise _Stopping
        return _Failed(
            f"{failure.reason} from {url}, still after {attempts} attempts", failure.error_type, attempts, failure.status
        )

    def _load_politely(self, url: str) -> Loaded:
        rules = self._robots_for(url)
        decision = frontier.robots_decision(rules, self._settings.user_agent, url)
        if not decision.allowed:
            raise FetchError(f"disallowed by robots.txt: {url}", transient=False, error_type="RobotsDisallowed")
        origin = frontier.origin_of(url)
        delay = max(self._settings.crawl_delay_s, decision.crawl_delay_s or 0.0)
        if self._stop.wait(self._politeness.wait_s(origin, delay, time.monotonic())):
            raise _Stopping
        try:
            return self._browser.load(url)
        finally:
            self._politeness.mark(origin, time.monotonic())

    def _robots_for(self, url: str) -> RobotFileParser:
        origin = frontier.origin_of(url)
        cached = self._robots.get(origin)
        if cached and time.monotonic() - cached[1] < ROBOTS_TTL_S:
            return cached[0]
        robots_url = frontier.robots_url(url)
        try:
            response = self._http.get(robots_url)
        except httpx.HTTPError as exc:
            raise FetchError(f"robots.txt unreachable at {robots_url}: {exc}", transient=True,
                             error_type="RobotsUnavailable") from exc
        if response.status_code >= 500 or response.status_code == 429:
            raise FetchError(f"robots.txt answered HTTP {response.status_code} at {robots_url}", transient=True,
                             error_type="RobotsUnavailable")
        rules = frontier.parse_robots(response.status_code, response.text)
        self._robots[origin] = (rules, time.monotonic())
        log.info("crawl.robots_loaded", origin=origin, status=response.status_code)
        return rules


def run(settings: Settings, stop: threading.Event, group: str = "ctrlgpt-crawler") -> None:
    """Crawl until `stop` is set. Call it from one thread: Playwright's browser belongs to it."""
    bus.ensure_topics(settings, [topics.CRAWL_REQUESTS, topics.PAGES_RAW, topics.dead_letter_topic(STAGE)])
    state = CrawlState(settings.data_dir / "crawler" / "state.sqlite3")
    http = httpx.Client(headers={"User-Agent": settings.user_agent}, timeout=settings.fetch_timeout_s, follow_redirects=True)
    producer = bus.make_producer(settings)
    browser = Browser(settings)
    try:
        crawler = Crawler(settings, browser, state, producer, http, stop)
        bus.consume(settings, group=group, topic=topics.CRAWL_REQUESTS, stage=STAGE, write=crawler.write, stop=stop,
                    batch_size=BATCH_SIZE)
    finally:
        browser.close()
        producer.flush(10)
        http.close()
        state.close()
        log.info("crawler.stopped")


def main(settings: Settings, args: argparse.Namespace) -> int:
    run(settings, stop_on_signals())
    return 0
