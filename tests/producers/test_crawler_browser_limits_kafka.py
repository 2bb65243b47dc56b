"""The browser fetch mode meets the same limits as plain HTTP: the size cap and redirect loops.

Real Kafka, real Chromium, a local site on its own origin.
"""

from __future__ import annotations

import uuid

import pytest
from crawl_harness import (
    CrawlerThread,
    letters_of,
    read_to_end,
    start_group_at_end,
    wait_until_caught_up,
)
from crawl_sites import Site, fixed, serve

from ctrlgpt.settings import Settings
from producers import crawler
from producers.seed import seed_requests
from streams import bus, topics

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def test_huge_pages_and_redirect_loops_are_dead_lettered_with_their_reason(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("crawler-browser"), fetch_retries=0, crawl_delay_s=0.0, fetch_timeout_s=60.0
    )
    bus.ensure_topics(settings, [topics.CRAWL_REQUESTS, topics.PAGES_RAW, topics.dead_letter_topic("crawl")])
    group = f"test-crawler-browser-{uuid.uuid4().hex}"
    start_group_at_end(settings, group, topics.CRAWL_REQUESTS)
    site = Site(
        {
            "/robots.txt": fixed((200, {"Content-Type": "text/plain"}, b"User-agent: *\nCrawl-delay: 0\n")),
            "/huge.html": fixed((200, {"Content-Type": "text/html"}, b"<p>" + b"x" * (crawler.MAX_HTML_BYTES + 1))),
            "/loop.html": fixed((302, {"Location": "/loop.html"}, b"")),
        }
    )
    crawl_id = uuid.uuid4().hex
    with serve(site):
        producer = bus.make_producer(settings)
        for request in seed_requests(
            [site.url + "huge.html", site.url + "loop.html"], crawl_id=crawl_id, max_depth=0, allowed_domains=[]
        ):
            bus.publish(producer, topics.CRAWL_REQUESTS, request)
        bus.flush_or_raise(producer)
        running = CrawlerThread(settings, group)
        wait_until_caught_up(settings, group, topics.CRAWL_REQUESTS)
        running.finish()

    letters = {
        letter.key: letter for letter in read_to_end(settings, topics.dead_letter_topic("crawl"), letters_of(crawl_id))
    }
    huge, loop = letters[site.url + "huge.html"], letters[site.url + "loop.html"]
    assert huge.error_type == "TooLarge" and "too large" in huge.reason
    assert loop.error_type == "RedirectLoop" and "over 20 redirects" in loop.reason
    assert len(site.hits_of("/loop.html")) == 1 + crawler.MAX_REDIRECTS  # followed by the crawler, not retried
    assert read_to_end(settings, topics.PAGES_RAW, lambda r: r.crawl_id == crawl_id) == []
