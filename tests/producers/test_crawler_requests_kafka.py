"""Every request the crawler makes counts against its host, and one page is one request, however it is spelled.

Redirect chains (of pages and of sitemaps) are followed by the crawler one hop at a time, each hop
waiting the host's delay (browser and plain HTTP); the browser requests neither the favicon nor the resource types the
settings block; two spellings of one URL are fetched once, in the form a browser sends. The
request times are taken by the test sites themselves. Real Kafka, real Chromium.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from crawl_harness import CrawlerThread, read_to_end, start_group_at_end, wait_until_caught_up
from crawl_sites import Response, Site, fixed, html_page, serve

from ctrlgpt.settings import Settings
from producers.identity import user_agent
from producers.seed import seed_requests
from streams import bus, topics
from streams.records import CrawlRequested, PageFetched

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

# Fractional, as RFC 9309 allows: the host's delay between any two of its requests.
CRAWL_DELAY_S = 0.6
CHAIN = ["/start", "/hop-1", "/hop-2", "/page.html"]
CONTACT = "http://crawl-operator.test/about"
PAGE_BODY = (
    '<link rel="stylesheet" href="/style.css"><img src="/picture.png">'
    '<video src="/clip.mp4"></video><a href="/caf%C3%A9?flag">first</a><a href="/x/../café?flag=">again</a>'
)


def _redirect(status: int, to: str) -> Response:
    return status, {"Location": to, "Content-Type": "text/plain"}, b""


def _robots(before: int, headers: dict[str, str]) -> Response:
    robots = f"User-agent: *\nCrawl-delay: {CRAWL_DELAY_S}\nSitemap: http://{headers['host']}/old-map.xml\n"
    return 200, {"Content-Type": "text/plain"}, robots.encode()


def _map(before: int, headers: dict[str, str]) -> Response:
    return 200, {"Content-Type": "text/plain"}, f"http://{headers['host']}/from-map.html\n".encode()


def _site() -> Site:
    return Site(
        {
            "/robots.txt": _robots,
            "/old-map.xml": fixed(_redirect(301, "/maps/map.txt")),
            "/maps/map.txt": _map,
            "/from-map.html": fixed(html_page("From the map")),
            "/start": fixed(_redirect(302, "/hop-1")),
            "/hop-1": fixed(_redirect(301, "hop-2")),
            "/hop-2": fixed(_redirect(307, "/page.html")),
            "/page.html": fixed(html_page("Page", body=PAGE_BODY)),
            "/style.css": fixed((200, {"Content-Type": "text/css"}, b"h1 { color: #333 }")),
            "/picture.png": fixed((200, {"Content-Type": "image/png"}, b"\x89PNG")),
            "/clip.mp4": fixed((200, {"Content-Type": "video/mp4"}, b"")),
            "/favicon.ico": fixed((200, {"Content-Type": "image/x-icon"}, b"")),
            # Every spelling answers, so that only the crawler's de-duplication keeps the page to one request.
            **{path: fixed(html_page("Café")) for path in ("/caf%C3%A9?flag", "/caf%C3%A9?flag=", "/caf%c3%a9?flag")},
        }
    )


@dataclass
class Run:
    settings: Settings
    browser_site: Site
    http_site: Site
    crawl_id: str
    pages: list[PageFetched]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("crawler-requests"),
        fetch_retries=0,
        crawl_delay_s=0.0,
        fetch_timeout_s=30.0,
        crawl_contact_url=CONTACT,
    )
    bus.ensure_topics(settings, [topics.CRAWL_REQUESTS, topics.PAGES_RAW, topics.dead_letter_topic("crawl")])
    group = f"test-crawler-requests-{uuid.uuid4().hex}"
    start_group_at_end(settings, group, topics.CRAWL_REQUESTS)
    crawl_id = uuid.uuid4().hex
    with serve(_site(), _site()) as (browser_site, http_site):
        requests = [
            *seed_requests([browser_site.url + "x/../start"], crawl_id=crawl_id, max_depth=1, allowed_domains=[]),
            *seed_requests(
                [http_site.url + "start"], crawl_id=crawl_id, max_depth=1, allowed_domains=[], fetch_mode="http"
            ),
            # Two more spellings of the page the links name, past seed_requests' own de-duplication.
            *(
                CrawlRequested(url=browser_site.url + spelling, crawl_id=crawl_id, max_depth=0, source="link")
                for spelling in ("./café?flag=", "caf%c3%a9?flag")
            ),
        ]
        producer = bus.make_producer(settings)
        for request in requests:
            bus.publish(producer, topics.CRAWL_REQUESTS, request)
        bus.flush_or_raise(producer)
        running = CrawlerThread(settings, group)
        wait_until_caught_up(settings, group, topics.CRAWL_REQUESTS)
        running.finish()
    pages = read_to_end(settings, topics.PAGES_RAW, lambda r: r.crawl_id == crawl_id)
    yield Run(settings, browser_site, http_site, crawl_id, pages)


@pytest.mark.parametrize("mode", ["browser", "http"])
def test_each_redirect_hop_waits_the_hosts_delay(run: Run, mode: str) -> None:
    site = run.browser_site if mode == "browser" else run.http_site
    hops = [hit for hit in site.hits if hit.path in CHAIN]
    assert [hit.path for hit in hops] == CHAIN
    answers = {hit.path: hit.at for hit in site.answered}
    gaps = [later.at - answers[earlier.path] for earlier, later in zip(hops, hops[1:])]
    assert all(gap >= CRAWL_DELAY_S for gap in gaps), gaps
    (page,) = [p for p in run.pages if p.url == site.url + "start"]
    assert page.final_url == site.url + "page.html" and "<title>Page</title>" in page.html


@pytest.mark.parametrize("mode", ["browser", "http"])
def test_a_sitemaps_redirect_waits_the_hosts_delay(run: Run, mode: str) -> None:
    site = run.browser_site if mode == "browser" else run.http_site
    moved, target = site.hits_of("/old-map.xml"), site.hits_of("/maps/map.txt")
    assert len(moved) == len(target) == 1
    (answered,) = [hit.at for hit in site.answered if hit.path == "/old-map.xml"]
    assert target[0].at - answered >= CRAWL_DELAY_S
    assert [p.url for p in run.pages if p.url == site.url + "from-map.html"] == [site.url + "from-map.html"]


def test_the_browser_requests_neither_the_favicon_nor_blocked_resource_types(run: Run) -> None:
    paths = {hit.path for hit in run.browser_site.hits}
    assert "/style.css" in paths  # what the page needs to render still loads
    assert not paths & {"/favicon.ico", "/picture.png", "/clip.mp4"}


def test_every_request_introduces_the_crawler_with_its_contact(run: Run) -> None:
    agents = {hit.headers.get("user-agent") for site in (run.browser_site, run.http_site) for hit in site.hits}
    assert agents == {user_agent(run.settings.user_agent, CONTACT)} == {f"ctrlgpt-crawler/0.1 (+{CONTACT})"}


def test_spellings_of_one_page_are_fetched_once(run: Run) -> None:
    for site in (run.browser_site, run.http_site):
        assert len([hit for hit in site.hits if "caf" in hit.path.lower()]) == 1, site.hits


def test_a_page_is_fetched_in_the_form_its_link_gives(run: Run) -> None:
    """The http site's only spellings are the page's two links, in page order: the first one's form is fetched,
    percent-encoded as a browser sends it, with `?flag` left as written."""
    assert [hit.path for hit in run.http_site.hits if "caf" in hit.path.lower()] == ["/caf%C3%A9?flag"]
    assert [p.url for p in run.pages if p.url.startswith(run.http_site.url + "caf")] == [
        run.http_site.url + "caf%C3%A9?flag"
    ]
