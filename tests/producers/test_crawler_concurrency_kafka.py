"""A batch is fetched at once: a slow site does not hold up the others, and each origin keeps its
concurrency cap and its delay.

Real Kafka, real Chromium (a pool of pages), three local sites on their own origins.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from crawl_harness import (
    CrawlerThread,
    read_to_end,
    start_group_at_end,
    wait_until_caught_up,
)
from crawl_sites import Hit, Site, fixed, html_page, serve, slow

from ctrlgpt.settings import Settings
from producers.seed import seed_requests
from streams import bus, topics

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

ROBOTS = fixed((200, {"Content-Type": "text/plain"}, b"User-agent: *\nCrawl-delay: 0\n"))
SLOW_S = 3.0
# Slow enough that two fetches of one site would overlap if nothing held them apart.
PAGE_S = 0.3
DELAY_S = 0.1
PAGES = [f"/p{i}.html" for i in range(4)]


def _fast_site() -> Site:
    return Site(
        {
            "/robots.txt": ROBOTS,
            "/": fixed(html_page("Index", *PAGES)),
            **{page: slow(PAGE_S, html_page(page)) for page in PAGES},
        }
    )


@dataclass
class Run:
    slow: Site
    fast: tuple[Site, Site]
    crawl_id: str
    settings: Settings


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("crawler-concurrency"),
        fetch_retries=0,
        crawl_delay_s=DELAY_S,
        fetch_timeout_s=30.0,
        crawl_browser_pages=4,
        crawl_per_origin_concurrency=1,
    )
    bus.ensure_topics(settings, [topics.CRAWL_REQUESTS, topics.PAGES_RAW, topics.dead_letter_topic("crawl")])
    group = f"test-crawler-concurrency-{uuid.uuid4().hex}"
    start_group_at_end(settings, group, topics.CRAWL_REQUESTS)
    slow_site = Site({"/robots.txt": ROBOTS, "/": slow(SLOW_S, html_page("Slow"))})
    with serve(slow_site, _fast_site(), _fast_site()) as (slowest, fast_a, fast_b):
        crawl_id = uuid.uuid4().hex
        producer = bus.make_producer(settings)
        # The slow seed first, all on one partition (one key) so they are consumed in this order: fetched one at a
        # time, the others would wait for it.
        for request in [
            *seed_requests([slowest.url], crawl_id=crawl_id, max_depth=0, allowed_domains=[]),
            *seed_requests([fast_a.url, fast_b.url], crawl_id=crawl_id, max_depth=1, allowed_domains=[]),
        ]:
            producer.produce(topics.CRAWL_REQUESTS.name, topics.CRAWL_REQUESTS.encode(request), key=crawl_id)
        bus.flush_or_raise(producer)
        running = CrawlerThread(settings, group)
        wait_until_caught_up(settings, group, topics.CRAWL_REQUESTS)
        running.finish()
        yield Run(slowest, (fast_a, fast_b), crawl_id, settings)


def _answered(site: Site, path: str) -> Hit:
    (answer,) = [hit for hit in site.answered if hit.path == path]
    return answer


def test_every_page_is_fetched_once(run: Run) -> None:
    pages = read_to_end(run.settings, topics.PAGES_RAW, lambda r: r.crawl_id == run.crawl_id)
    expected = {run.slow.url} | {site.url + page.lstrip("/") for site in run.fast for page in ["/", *PAGES]}
    assert sorted(str(page.url) for page in pages) == sorted(expected)


def test_the_other_sites_are_fetched_while_the_slow_page_is_in_flight(run: Run) -> None:
    (slow_start,) = run.slow.hits_of("/")
    slow_end = _answered(run.slow, "/")
    assert slow_end.at - slow_start.at >= SLOW_S
    for site in run.fast:  # fetched one at a time, they would start only once the slow page was answered
        (start,) = site.hits_of("/")
        assert start.at < slow_end.at and _answered(site, "/").at < slow_end.at


def test_an_origin_never_has_more_fetches_in_flight_than_its_cap(run: Run) -> None:
    assert [site.max_in_flight for site in (run.slow, *run.fast)] == [1, 1, 1]


def test_each_fetch_of_an_origin_waits_its_delay_after_the_previous_one(run: Run) -> None:
    def fetched(hits: list[Hit]) -> list[Hit]:  # the crawler's own requests, not Chromium's favicon.ico of a page
        return sorted((hit for hit in hits if hit.path not in {"/robots.txt", "/favicon.ico"}), key=lambda hit: hit.at)

    for site in run.fast:
        starts, ends = fetched(site.hits), fetched(site.answered)
        assert len(starts) == len(ends) == 2 + len(PAGES), [hit.path for hit in starts]  # seed, sitemap, pages
        assert all(start.at - end.at >= DELAY_S for end, start in zip(ends, starts[1:], strict=False))
