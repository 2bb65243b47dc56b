"""The crawler end to end: real Kafka, real Chromium, the demo site served in-process."""

from __future__ import annotations

import argparse
import contextlib
import io
import uuid
from collections import Counter
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

from ctrlgpt.settings import Settings
from deploy import demo_site
from producers import seed
from streams import bus, topics
from streams.records import DeadLetter, PageFetched

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


@dataclass
class Crawl:
    settings: Settings
    site: demo_site.DemoSite
    group: str
    crawl_id: str
    pages: list[PageFetched]
    letters: list[DeadLetter]


@pytest.fixture(scope="module")
def crawl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Crawl]:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("crawler-data"),
        fetch_retries=2,
        fetch_backoff_s=0.05,
        crawl_delay_s=0.0,
        fetch_timeout_s=15.0,
    )
    bus.ensure_topics(settings, [topics.CRAWL_REQUESTS, topics.PAGES_RAW, topics.dead_letter_topic("crawl")])
    group = f"test-crawler-{uuid.uuid4().hex}"
    start_group_at_end(settings, group, topics.CRAWL_REQUESTS)
    site = demo_site.serve(0)
    try:
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            assert (
                seed.main(
                    settings,
                    argparse.Namespace(
                        urls=[site.url], max_depth=2, allow_domain=[], fetch_mode="browser", max_pages=None
                    ),
                )
                == 0
            )
        crawl_id = printed.getvalue().split()[-1]  # the last thing printed; logs may precede it
        running = CrawlerThread(settings, group)
        wait_until_caught_up(settings, group, topics.CRAWL_REQUESTS)
        running.finish()
        pages = read_to_end(settings, topics.PAGES_RAW, lambda r: r.crawl_id == crawl_id)
        letters = read_to_end(settings, topics.dead_letter_topic("crawl"), letters_of(crawl_id))
        yield Crawl(settings, site, group, crawl_id, pages, letters)
    finally:
        site.stop()


def test_every_article_arrives_rendered_once(crawl: Crawl) -> None:
    articles = demo_site.load_articles()
    by_url = {page.url: page for page in crawl.pages}
    assert Counter(page.url for page in crawl.pages).most_common(1)[0][1] == 1, "a page was fetched twice"
    for article in articles:
        page = by_url[demo_site.article_url(crawl.site.url, article.slug)]
        assert page.status == 200 and page.content_type.startswith("text/html")
        assert f"<title>{article.title}</title>" in page.html
        assert page.depth == 1
    assert by_url[crawl.site.url].depth == 0
    assert set(by_url) == {crawl.site.url, *(demo_site.article_url(crawl.site.url, a.slug) for a in articles)}


def test_the_broken_page_is_dead_lettered_after_retries(crawl: Crawl) -> None:
    broken = demo_site.article_url(crawl.site.url, demo_site.BROKEN_SLUG)
    letters = [letter for letter in crawl.letters if letter.key == broken]
    assert len(letters) == 1
    letter = letters[0]
    assert "HTTP 500" in letter.reason and broken in letter.reason
    assert letter.attempts == 1 + crawl.settings.fetch_retries
    assert letter.stage == "crawl" and letter.source_topic == topics.CRAWL_REQUESTS.name


def test_robots_txt_keeps_the_private_page_out(crawl: Crawl) -> None:
    private = crawl.site.url + "private/staff.html"
    assert private not in {page.url for page in crawl.pages}
    letters = [letter for letter in crawl.letters if letter.key == private]
    assert len(letters) == 1 and "robots.txt" in letters[0].reason and letters[0].attempts == 1


def test_a_restarted_crawler_does_not_fetch_again(crawl: Crawl) -> None:
    again = seed.seed_requests(
        [crawl.site.url, demo_site.article_url(crawl.site.url, demo_site.load_articles()[0].slug)],
        crawl_id=crawl.crawl_id,
        max_depth=2,
        allowed_domains=[],
    )
    producer = bus.make_producer(crawl.settings)
    for request in again:
        bus.publish(producer, topics.CRAWL_REQUESTS, request)
    bus.flush_or_raise(producer)
    running = CrawlerThread(crawl.settings, crawl.group)
    wait_until_caught_up(crawl.settings, crawl.group, topics.CRAWL_REQUESTS)
    running.finish()
    pages = read_to_end(crawl.settings, topics.PAGES_RAW, lambda r: r.crawl_id == crawl.crawl_id)
    assert sorted(page.event_id for page in pages) == sorted(page.event_id for page in crawl.pages)
