"""Driving the cleaner in tests: raw pages to publish, a `ctrlgpt cleaner` subprocess, the clean topic read back."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition
from elasticsearch import Elasticsearch

from consumers.search_index import PageIndexSink
from ctrlgpt.settings import REPO_ROOT, Settings
from streams import bus, topics
from streams.records import PageCleaned, PageFetched

__all__ = [
    "CleanReader",
    "article",
    "ends",
    "html",
    "publish",
    "raw",
    "start_cleaner",
    "start_group_at_end",
    "stop",
    "unique_urls",
    "wait_for_index_count",
]

WORDS = (
    "harbour river ferry morning village market bread coffee train station mountain valley story council budget "
    "school garden festival music theatre bridge winter summer crowd street window light evening night city coast "
    "island fisherman baker teacher doctor rain wind snow road field forest lake bird dog house door table chair "
    "book letter song dance painting museum library"
).split()


def article(seed: int | str, paragraphs: int = 30) -> str:
    rng = random.Random(seed)
    return "\n".join(
        "<p>" + " ".join(rng.choice(WORDS) for _ in range(70)).capitalize() + ".</p>" for _ in range(paragraphs)
    )


def html(title: str, body: str) -> str:
    return f"<html><head><title>{title}</title></head><body><nav><a href='/'>Home</a></nav><article>{body}</article></body></html>"


def raw(url: str, crawl_id: str, page_html: str) -> PageFetched:
    return PageFetched(url=url, final_url=url, crawl_id=crawl_id, status=200, html=page_html)


def publish(settings: Settings, pages: list[PageFetched], partition: int | None = None) -> None:
    producer = bus.make_producer(settings)
    for page in pages:
        if partition is None:
            bus.publish(producer, topics.PAGES_RAW, page)
        else:
            producer.produce(
                topics.PAGES_RAW.name,
                key=topics.PAGES_RAW.key_of(page),
                value=topics.PAGES_RAW.encode(page),
                partition=partition,
            )
    bus.flush_or_raise(producer)


def ends(settings: Settings, topic: str) -> list[TopicPartition]:
    consumer = bus.make_consumer(settings, f"test-ends-{uuid.uuid4().hex}")
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return [
            TopicPartition(topic, p, consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1])
            for p in partitions
        ]
    finally:
        consumer.close()


def start_group_at_end(settings: Settings, group: str, topic: str) -> None:
    """A group on a shared topic reads only what is published after this call."""
    consumer = bus.make_consumer(settings, group)
    try:
        consumer.commit(offsets=ends(settings, topic), asynchronous=False)
    finally:
        consumer.close()


class CleanReader:
    """Reads the clean topic from where it ended when the test began, keeping one crawl's pages."""

    def __init__(self, settings: Settings, crawl_id: str) -> None:
        self._crawl_id = crawl_id
        self._consumer = Consumer(
            {
                "bootstrap.servers": settings.kafka_bootstrap,
                "group.id": f"test-reader-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
            }
        )
        self._consumer.assign(ends(settings, topics.PAGES_CLEAN.name))
        self.pages: list[PageCleaned] = []

    def read_until(self, done: Callable[[list[PageCleaned]], bool], timeout: float = 60.0) -> list[PageCleaned]:
        deadline = time.monotonic() + timeout
        while not done(self.pages) and time.monotonic() < deadline:
            for msg in self._consumer.consume(num_messages=500, timeout=0.2):
                if msg.error():
                    continue
                page = topics.PAGES_CLEAN.decode(msg.value())
                if page.crawl_id == self._crawl_id:
                    self.pages.append(page)
        return self.pages

    def read_to_end(self, settings: Settings) -> list[PageCleaned]:
        """Everything on the clean topic now, e.g. all that a killed worker got out."""
        end_offsets = {tp.partition: tp.offset for tp in ends(settings, topics.PAGES_CLEAN.name)}

        def at_end(_: list[PageCleaned]) -> bool:
            positions = self._consumer.position([TopicPartition(topics.PAGES_CLEAN.name, p) for p in end_offsets])
            return all(tp.offset >= end_offsets[tp.partition] for tp in positions)

        return self.read_until(at_end)

    def close(self) -> None:
        self._consumer.close()


def start_cleaner(app_id: str, data_dir: Path, log_path: Path, *overrides: str) -> subprocess.Popen:
    """A `ctrlgpt cleaner` process; `overrides` are more NAME=VALUE settings."""
    command = [
        sys.executable,
        "-m",
        "ctrlgpt.cli",
        "--set",
        f"cleaner_app_id={app_id}",
        "--set",
        f"data_dir={data_dir}",
        *(argument for override in overrides for argument in ("--set", override)),
    ]
    with log_path.open("ab") as log_file:
        return subprocess.Popen([*command, "cleaner"], cwd=REPO_ROOT, stdout=log_file, stderr=subprocess.STDOUT)


def stop(worker: subprocess.Popen) -> int:
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
    return worker.wait(timeout=60)


def unique_urls(pages: list[PageCleaned]) -> set[str]:
    return {page.url for page in pages}


def wait_for_index_count(es: Elasticsearch, alias: str, crawl_id: str, expected: int, timeout: float = 60.0) -> int:
    """Documents of one crawl in the index once there are `expected` of them (or the last count at the timeout)."""
    deadline, count = time.monotonic() + timeout, -1
    while time.monotonic() < deadline:
        if es.indices.exists_alias(name=alias):
            es.indices.refresh(index=alias)
            count = es.count(index=alias, query={"term": {"crawl_id": crawl_id}})["count"]
            if count >= expected:
                # Settled: a later duplicate write of a page would show as a higher count, never as a second document.
                return count
        time.sleep(0.5)
    return count


def start_index_sink(settings: Settings, group: str, sink: PageIndexSink) -> tuple[threading.Thread, threading.Event]:
    """`sink` run in a thread of this process on the clean pages; set the event to stop it."""
    stop_index = threading.Event()
    indexer = threading.Thread(
        target=bus.run_sink,
        args=(settings, sink),
        kwargs={"group": group, "topic": topics.PAGES_CLEAN, "stage": "index", "stop": stop_index},
    )
    indexer.start()
    return indexer, stop_index
