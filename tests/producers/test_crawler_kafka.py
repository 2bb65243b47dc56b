"""The crawler end to end: real Kafka, real Chromium, the demo site served in-process."""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from confluent_kafka import Consumer, TopicPartition

from ctrlgpt.settings import Settings
from deploy import demo_site
from producers import crawler, seed
from streams import bus, topics
from streams.records import CrawlRequested, DeadLetter, PageFetched, Record
from streams.topics import ContractError, Topic

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def _consumer(settings: Settings, group: str) -> Consumer:
    return Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": group, "enable.auto.commit": False})


def _high_watermarks(consumer: Consumer, topic: Topic) -> list[TopicPartition]:
    partitions = consumer.list_topics(topic.name, timeout=10).topics[topic.name].partitions
    return [TopicPartition(topic.name, p, consumer.get_watermark_offsets(TopicPartition(topic.name, p), timeout=10)[1])
            for p in partitions]


def _start_group_at_end(settings: Settings, group: str, topic: Topic) -> None:
    """The topic is shared: a new group must not crawl every request ever published."""
    consumer = _consumer(settings, group)
    try:
        consumer.commit(offsets=_high_watermarks(consumer, topic), asynchronous=False)
    finally:
        consumer.close()


def _wait_until_caught_up(settings: Settings, group: str, topic: Topic, timeout: float = 240.0) -> None:
    """Until the group committed everything on the topic: links are published before their batch commits."""
    consumer = _consumer(settings, group)
    deadline = time.monotonic() + timeout
    try:
        while True:
            ends = {(tp.partition): tp.offset for tp in _high_watermarks(consumer, topic)}
            committed = consumer.committed([TopicPartition(topic.name, p) for p in ends], timeout=10)
            if all(tp.offset >= ends[tp.partition] for tp in committed):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"group {group} did not catch up on {topic.name}: {committed} vs {ends}")
            time.sleep(0.5)
    finally:
        consumer.close()


def _read_to_end(settings: Settings, topic: Topic, keep: Callable[[Record], bool]) -> list[Record]:
    consumer = _consumer(settings, f"test-reader-{uuid.uuid4().hex}")
    try:
        ends = {tp.partition: tp.offset for tp in _high_watermarks(consumer, topic)}
        consumer.assign([TopicPartition(topic.name, p, 0) for p in ends])
        positions = {p: 0 for p in ends}
        found = []
        while any(positions[p] < ends[p] for p in ends):
            msg = consumer.poll(1.0)
            if msg is None or msg.error():
                continue
            positions[msg.partition()] = msg.offset() + 1
            if msg.offset() >= ends[msg.partition()]:
                continue
            try:  # the topics are shared: other tests put malformed records on them on purpose
                record = topic.decode(msg.value())
            except ContractError:
                continue
            if keep(record):
                found.append(record)
        return found
    finally:
        consumer.close()


class _CrawlerThread:
    def __init__(self, settings: Settings, group: str) -> None:
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(settings, group), daemon=True)
        self.thread.start()

    def _run(self, settings: Settings, group: str) -> None:
        try:
            crawler.run(settings, self.stop, group=group)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(60)
        assert not self.thread.is_alive(), "crawler did not stop"
        assert self.error is None, repr(self.error)


@dataclass
class Crawl:
    settings: Settings
    site: demo_site.DemoSite
    group: str
    crawl_id: str
    pages: list[PageFetched]
    letters: list[DeadLetter]


def _letters_of(crawl_id: str) -> Callable[[Record], bool]:
    def keep(letter: Record) -> bool:
        try:
            request = topics.CRAWL_REQUESTS.decode(base64.b64decode(letter.original_base64))
        except ContractError:
            return False
        return isinstance(request, CrawlRequested) and request.crawl_id == crawl_id

    return keep


@pytest.fixture(scope="module")
def crawl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Crawl]:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("crawler-data"), fetch_retries=2, fetch_backoff_s=0.05, crawl_delay_s=0.0,
        fetch_timeout_s=15.0,
    )
    bus.ensure_topics(settings, [topics.CRAWL_REQUESTS, topics.PAGES_RAW, topics.dead_letter_topic("crawl")])
    group = f"test-crawler-{uuid.uuid4().hex}"
    _start_group_at_end(settings, group, topics.CRAWL_REQUESTS)
    site = demo_site.serve(0)
    try:
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            assert seed.main(settings, argparse.Namespace(urls=[site.url], max_depth=2, allow_domain=[])) == 0
        crawl_id = printed.getvalue().split()[-1]  # the last thing printed; logs may precede it
        running = _CrawlerThread(settings, group)
        _wait_until_caught_up(settings, group, topics.CRAWL_REQUESTS)
        running.finish()
        pages = _read_to_end(settings, topics.PAGES_RAW, lambda r: r.crawl_id == crawl_id)
        letters = _read_to_end(settings, topics.dead_letter_topic("crawl"), _letters_of(crawl_id))
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
        crawl_id=crawl.crawl_id, max_depth=2, allowed_domains=[],
    )
    producer = bus.make_producer(crawl.settings)
    for request in again:
        bus.publish(producer, topics.CRAWL_REQUESTS, request)
    bus.flush_or_raise(producer)
    running = _CrawlerThread(crawl.settings, crawl.group)
    _wait_until_caught_up(crawl.settings, crawl.group, topics.CRAWL_REQUESTS)
    running.finish()
    pages = _read_to_end(crawl.settings, topics.PAGES_RAW, lambda r: r.crawl_id == crawl.crawl_id)
    assert sorted(page.event_id for page in pages) == sorted(page.event_id for page in crawl.pages)
