"""The crawler in `fetch_mode="http"` against scripted local sites: Retry-After, Crawl-delay, per-crawl
page caps, bad input.

Real Kafka, real sockets; every site is its own origin on 127.0.0.1.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from crawl_harness import (
    CrawlerThread,
    letters_of,
    read_to_end,
    start_group_at_end,
    wait_until_caught_up,
)
from crawl_sites import Site, fixed, html_page, http_date, serve, slow, then

from ctrlgpt.settings import Settings
from producers import crawler
from producers.seed import seed_requests
from streams import bus, topics
from streams.records import CrawlRequested, DeadLetter, PageFetched

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

ROBOTS = fixed((200, {"Content-Type": "text/plain"}, b"User-agent: *\nCrawl-delay: 0\n"))
# Run only by a browser: its absence from a page's HTML shows that no browser rendered it.
SCRIPT = "<script>document.title = 'JS' + 'RAN';</script>"
FETCH_TIMEOUT_S = 1.5
BAD_INPUT = {
    "/busy.html": "HttpError",
    "/huge.html": "TooLarge",
    "/loop.html": "RedirectLoop",
    "/slow.html": "Timeout",
    "/bad-charset.html": "UndecodableBody",
    "/report.pdf": "Rejected",
}


def _busy(before: int, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    return 503, {"Retry-After": http_date(1), "Content-Type": "text/plain"}, b"busy"


def _troubled_site() -> Site:
    return Site(
        {
            "/robots.txt": ROBOTS,
            "/": fixed(html_page("Home", "/flaky.html", "/latin1.html", *BAD_INPUT, body=SCRIPT)),
            "/flaky.html": then((429, {"Retry-After": "1"}, b"slow down"), 1, html_page("Flaky", body=SCRIPT)),
            "/latin1.html": fixed(html_page("Café crème", charset="iso-8859-1")),
            "/busy.html": _busy,
            "/huge.html": fixed((200, {"Content-Type": "text/html"}, b"<p>" + b"x" * (crawler.MAX_HTML_BYTES + 1))),
            "/loop.html": fixed((302, {"Location": "/loop.html"}, b"")),
            "/slow.html": slow(FETCH_TIMEOUT_S * 2, html_page("Slow")),
            "/bad-charset.html": fixed((200, {"Content-Type": "text/html; charset=utf-8"}, b"<p>caf\xe9 \xff\xfe</p>")),
            "/report.pdf": fixed((200, {"Content-Type": "application/pdf"}, b"%PDF-1.4")),
        }
    )


def _wide_site() -> Site:
    pages = [f"/p{i}.html" for i in range(6)]
    return Site(
        {
            "/robots.txt": ROBOTS,
            "/": fixed(html_page("Index", *pages)),
            **{page: fixed(html_page(page)) for page in pages},
        }
    )


def _delayed_site() -> Site:
    robots = fixed((200, {"Content-Type": "text/plain"}, b"User-agent: *\nCrawl-delay: 1\n"))
    return Site({"/robots.txt": robots, "/": fixed(html_page("Home", "/a.html")), "/a.html": fixed(html_page("A"))})


@dataclass
class Run:
    settings: Settings
    troubled: Site
    wide: Site
    delayed: Site
    troubled_id: str
    wide_id: str
    invalid_key: str


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("crawler-http"),
        fetch_retries=1,
        fetch_backoff_s=0.05,
        crawl_delay_s=0.0,
        fetch_timeout_s=FETCH_TIMEOUT_S,
    )
    bus.ensure_topics(settings, [topics.CRAWL_REQUESTS, topics.PAGES_RAW, topics.dead_letter_topic("crawl")])
    group = f"test-crawler-http-{uuid.uuid4().hex}"
    start_group_at_end(settings, group, topics.CRAWL_REQUESTS)
    with serve(_troubled_site(), _wide_site(), _delayed_site()) as (troubled, wide, delayed):
        troubled_id, wide_id, invalid_key = (uuid.uuid4().hex for _ in range(3))
        producer = bus.make_producer(settings)
        for request in [
            *seed_requests([troubled.url], crawl_id=troubled_id, max_depth=1, allowed_domains=[], fetch_mode="http"),
            *seed_requests(
                [wide.url], crawl_id=wide_id, max_depth=1, allowed_domains=[], fetch_mode="http", max_pages=2
            ),
            *seed_requests(
                [delayed.url], crawl_id=uuid.uuid4().hex, max_depth=1, allowed_domains=[], fetch_mode="http"
            ),
        ]:
            bus.publish(producer, topics.CRAWL_REQUESTS, request)
        # A URL the contract lets through but no fetch can use: the crawler must say so, not retry it.
        invalid = CrawlRequested(url="http://exa mple.test/", crawl_id=invalid_key, fetch_mode="http")
        producer.produce(topics.CRAWL_REQUESTS.name, topics.CRAWL_REQUESTS.encode(invalid), key=invalid_key)
        bus.flush_or_raise(producer)
        running = CrawlerThread(settings, group)
        wait_until_caught_up(settings, group, topics.CRAWL_REQUESTS)
        running.finish()
        yield Run(settings, troubled, wide, delayed, troubled_id, wide_id, invalid_key)


def _pages(run: Run, crawl_id: str) -> dict[str, PageFetched]:
    return {
        str(page.url): page for page in read_to_end(run.settings, topics.PAGES_RAW, lambda r: r.crawl_id == crawl_id)
    }


def _letters(run: Run, crawl_id: str) -> dict[str, DeadLetter]:
    letters = read_to_end(run.settings, topics.dead_letter_topic("crawl"), letters_of(crawl_id))
    return {letter.key: letter for letter in letters}


def test_pages_are_fetched_without_a_browser_and_decoded_by_their_charset(run: Run) -> None:
    pages = _pages(run, run.troubled_id)
    assert set(pages) == {run.troubled.url, run.troubled.url + "flaky.html", run.troubled.url + "latin1.html"}
    assert all(
        "<title>JSRAN</title>" not in page.html and SCRIPT in page.html
        for url, page in pages.items()
        if not url.endswith("latin1.html")
    )
    assert "<title>Café crème</title>" in pages[run.troubled.url + "latin1.html"].html
    agents = {hit.headers["user-agent"] for hit in run.troubled.hits}
    assert agents == {run.settings.user_agent} == {"ctrlgpt-crawler/0.1"}  # no contact configured: no made-up one


def test_a_429_pauses_the_host_for_its_retry_after_then_the_page_is_fetched(run: Run) -> None:
    first, second = run.troubled.hits_of("/flaky.html")
    assert second.at - first.at >= 1.0


def test_a_503_that_stays_busy_is_dead_lettered_with_its_retry_after(run: Run) -> None:
    letter = _letters(run, run.troubled_id)[run.troubled.url + "busy.html"]
    assert "HTTP 503" in letter.reason and "Retry-After" in letter.reason
    assert letter.attempts == 1 + run.settings.fetch_retries == len(run.troubled.hits_of("/busy.html"))


def test_bad_input_is_dead_lettered_with_its_reason(run: Run) -> None:
    letters = _letters(run, run.troubled_id)
    found = {url.removeprefix(run.troubled.url.rstrip("/")): letter.error_type for url, letter in letters.items()}
    assert found == BAD_INPUT
    reasons = {url.removeprefix(run.troubled.url.rstrip("/")): letter.reason for url, letter in letters.items()}
    assert "too large" in reasons["/huge.html"]
    assert "redirect loop: over 20 redirects" in reasons["/loop.html"]
    assert len(run.troubled.hits_of("/loop.html")) == 1 + crawler.MAX_REDIRECTS  # followed by the crawler, not retried
    assert "timed out" in reasons["/slow.html"] and letters[run.troubled.url + "slow.html"].attempts == 2
    assert "not valid utf-8" in reasons["/bad-charset.html"]
    assert "not HTML" in reasons["/report.pdf"]


def test_an_invalid_url_is_dead_lettered_without_a_fetch(run: Run) -> None:
    letters = _letters(run, run.invalid_key)
    assert len(letters) == 1
    (letter,) = letters.values()
    assert letter.error_type == "InvalidUrl" and "invalid host" in letter.reason and letter.attempts == 0


def test_the_crawl_page_cap_and_fetch_mode_carry_on_to_its_links(run: Run) -> None:
    assert len(_pages(run, run.wide_id)) == 3  # the seed and the 2 links its cap allows
    links = read_to_end(run.settings, topics.CRAWL_REQUESTS, lambda r: r.crawl_id == run.wide_id and r.source == "link")
    assert len(links) == 2 and all(link.max_pages == 2 and link.fetch_mode == "http" for link in links)


def test_robots_crawl_delay_spaces_the_fetches_of_an_origin(run: Run) -> None:
    fetches = [hit for hit in run.delayed.hits if hit.path != "/robots.txt"]
    assert [hit.path for hit in fetches] == ["/", "/sitemap.xml", "/a.html"]
    assert all(later.at - earlier.at >= 1.0 for earlier, later in zip(fetches, fetches[1:]))
