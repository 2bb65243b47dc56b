"""Poison records on every topic the bus consumes: not JSON, the wrong schema, and a record just under the
broker's size limit. Each ends in its stage's dead-letter topic with its reason and source (the big one as a
bounded excerpt), and the stage goes on to the next good record.

Real Kafka, Elasticsearch and doccano; the stages run in this process, each in a consumer group of its own.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import pytest
from confluent_kafka import Producer
from crawl_harness import CrawlerThread, read_to_end, start_group_at_end
from crawl_sites import Site, fixed, html_page, serve
from elasticsearch import Elasticsearch
from topic_reader import read_records

from consumers.doccano_client import DoccanoClient
from consumers.doccano_sink import PassageSink, expansion_key
from consumers.search_index import PageIndexSink, document_id
from ctrlgpt import secrets
from ctrlgpt.retry import retrying
from ctrlgpt.settings import Settings
from streams import bus, topics
from streams.records import CrawlRequested, DeadLetter, PageCleaned
from streams.topics import Topic

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

# Just under the broker's (and the producers') message.max.bytes, leaving room for the key and framing.
NEAR_LIMIT_BYTES = bus.MESSAGE_MAX_BYTES - 16 * 1024


# Three records no stage can read: not JSON, JSON of the wrong shape, and one just under the size limit.
POISON = [b"{not json", b'{"schema_version": 1, "unexpected": true}', b"<" + b"x" * NEAR_LIMIT_BYTES]


def _produce(settings: Settings, topic: Topic, values: list[bytes], key: bytes) -> list[tuple[int, int]]:
    """Produce raw values to partition 0 in order; returns their (partition, offset)."""
    producer: Producer = bus.make_producer(settings)
    positions: list[tuple[int, int]] = []

    def delivered(err, msg) -> None:
        assert err is None, err
        positions.append((msg.partition(), msg.offset()))

    for value in values:
        producer.produce(topic.name, key=key, value=value, partition=0, on_delivery=delivered)
        producer.flush(30)
    assert len(positions) == len(values)
    return positions


def _letters(settings: Settings, stage: str, source: Topic, positions: list[tuple[int, int]]) -> list[DeadLetter]:
    wanted = set(positions)
    return read_records(
        settings,
        topics.dead_letter_topic(stage),
        until=lambda found: len(found) >= len(wanted),
        keep=lambda letter: letter.source_topic == source.name and (letter.partition, letter.offset) in wanted,
        timeout=120,
    )


def _assert_dead_lettered(letters: list[DeadLetter], positions: list[tuple[int, int]], sizes: list[int]) -> None:
    by_offset = {(letter.partition, letter.offset): letter for letter in letters}
    assert set(by_offset) == set(positions), letters
    for position, size in zip(positions, sizes, strict=True):
        letter = by_offset[position]
        assert letter.error_type == "ContractError" and letter.reason
        near_limit = size > NEAR_LIMIT_BYTES
        assert (letter.truncated, letter.original_size) == ((True, size) if near_limit else (False, None)), position


@contextmanager
def _running(target: Callable[[threading.Event], None]) -> Iterator[threading.Event]:
    stop, errors = threading.Event(), []

    def run() -> None:
        try:
            target(stop)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield stop
    finally:
        stop.set()
        thread.join(60)
    assert not thread.is_alive(), "the stage did not stop"
    assert not errors, repr(errors)


def _page(url: str, crawl_id: str) -> PageCleaned:
    text = "\n".join(
        f"Paragraph {n} of a page that is good to label, about harbours and ferries at dawn." * 3 for n in range(3)
    )
    return PageCleaned(
        url=url,
        domain="example.org",
        title="A good page",
        summary="Good.",
        text=text,
        language="en",
        content_sha256="0" * 64,
        fetched_at=datetime.now(UTC),
        crawl_id=crawl_id,
    )


def _publish_poison_then_good(settings: Settings, topic: Topic, good: bytes, key: bytes) -> tuple[list, list[int]]:
    positions = _produce(settings, topic, [*POISON, good], key)
    return positions[:-1], [len(value) for value in POISON]


def test_the_index_sink_dead_letters_poison_and_indexes_the_next_page(settings: Settings) -> None:
    run = uuid.uuid4().hex
    group, alias, url = f"test-poison-index-{run}", f"test-poison-{run}", f"https://example.org/good-{run}"
    bus.ensure_topics(settings, [topics.PAGES_CLEAN, topics.dead_letter_topic("index")])
    start_group_at_end(settings, group, topics.PAGES_CLEAN)
    good = topics.PAGES_CLEAN.encode(_page(url, run))
    positions, sizes = _publish_poison_then_good(settings, topics.PAGES_CLEAN, good, url.encode())
    sink = PageIndexSink(es_url=settings.es_url, alias=alias)
    es = Elasticsearch(settings.es_url)
    try:
        with _running(
            lambda stop: bus.run_sink(settings, sink, group=group, topic=topics.PAGES_CLEAN, stage="index", stop=stop)
        ):
            letters = _letters(settings, "index", topics.PAGES_CLEAN, positions)
            indexed = retrying(AssertionError, what="the good page indexed", give_up_after_s=60, max_delay_s=1)(
                lambda: (
                    es.get(index=alias, id=document_id(url))
                    if es.exists(index=alias, id=document_id(url))
                    else _fail("not indexed yet")
                )
            )
    finally:
        es.options(ignore_status=404).indices.delete(index=sink.first_index)
        es.options(ignore_status=404).indices.delete_index_template(name=f"{alias}-pages")
        es.close()

    _assert_dead_lettered(letters, positions, sizes)
    assert indexed["_source"]["url"] == url


def test_the_doccano_sink_dead_letters_poison_and_sends_the_next_page(settings: Settings) -> None:
    run = uuid.uuid4().hex
    group, url = f"test-poison-doccano-{run}", f"https://example.org/good-{run}"
    bus.ensure_topics(settings, [topics.PAGES_CLEAN, topics.dead_letter_topic("doccano")])
    start_group_at_end(settings, group, topics.PAGES_CLEAN)
    good = topics.PAGES_CLEAN.encode(_page(url, run))
    positions, sizes = _publish_poison_then_good(settings, topics.PAGES_CLEAN, good, url.encode())
    sink = PassageSink(
        doccano_url=settings.doccano_url,
        username=settings.doccano_username,
        password=secrets.load_or_create(settings.secrets_file).doccano_password,
        project_name=f"test poison {run}",
        expansion_project_name=f"test poison expansions {run}",
    )
    with _running(
        lambda stop: bus.run_sink(settings, sink, group=group, topic=topics.PAGES_CLEAN, stage="doccano", stop=stop)
    ):
        letters = _letters(settings, "doccano", topics.PAGES_CLEAN, positions)
        expansions = retrying(AssertionError, what="the good page in doccano", give_up_after_s=60, max_delay_s=1)(
            lambda: _expansion_keys(settings, sink) or _fail("no expansion yet")
        )
    _delete_projects(settings, sink)

    _assert_dead_lettered(letters, positions, sizes)
    assert expansions == [expansion_key(url)]


def test_the_crawler_dead_letters_poison_and_crawls_the_next_request(settings: Settings) -> None:
    run = uuid.uuid4().hex
    group = f"test-poison-crawl-{run}"
    bus.ensure_topics(settings, [topics.CRAWL_REQUESTS, topics.PAGES_RAW, topics.dead_letter_topic("crawl")])
    start_group_at_end(settings, group, topics.CRAWL_REQUESTS)
    site = Site(
        {
            "/robots.txt": fixed((200, {"Content-Type": "text/plain"}, b"User-agent: *\nCrawl-delay: 0\n")),
            "/": fixed(html_page("Good")),
        }
    )
    with serve(site):
        request = CrawlRequested(url=site.url, crawl_id=run, max_depth=0, fetch_mode="http")
        positions, sizes = _publish_poison_then_good(
            settings, topics.CRAWL_REQUESTS, topics.CRAWL_REQUESTS.encode(request), site.url.encode()
        )
        crawler = CrawlerThread(settings, group)
        try:
            letters = _letters(settings, "crawl", topics.CRAWL_REQUESTS, positions)
            fetched = retrying(AssertionError, what="the good request crawled", give_up_after_s=60, max_delay_s=1)(
                lambda: (
                    read_to_end(settings, topics.PAGES_RAW, lambda page: page.crawl_id == run)
                    or _fail("not crawled yet")
                )
            )
        finally:
            crawler.finish()

    _assert_dead_lettered(letters, positions, sizes)
    assert [str(page.url) for page in fetched] == [site.url]


def _fail(why: str) -> None:
    raise AssertionError(why)


def _expansion_keys(settings: Settings, sink: PassageSink) -> list[str]:
    client = _client(settings)
    try:
        return [example["meta"]["expansion_key"] for example in client.iter_examples(sink.expansion_project_id)]
    finally:
        client.close()


def _delete_projects(settings: Settings, sink: PassageSink) -> None:
    client = _client(settings)
    try:
        for project_id in (sink.project_id, sink.expansion_project_id):
            if project_id is not None:
                client.delete_project(project_id)
    finally:
        client.close()


def _client(settings: Settings) -> DoccanoClient:
    client = DoccanoClient(
        settings.doccano_url, settings.doccano_username, secrets.load_or_create(settings.secrets_file).doccano_password
    )
    client.login()
    return client
