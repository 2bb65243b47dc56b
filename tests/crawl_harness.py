"""Driving the crawler in tests: a group that starts at the topic's end, waiting for it to catch up, reading back."""

from __future__ import annotations

import base64
import threading
import time
import uuid
from collections.abc import Callable

from confluent_kafka import Consumer, TopicPartition

from ctrlgpt.settings import Settings
from producers import crawler
from streams import topics
from streams.records import CrawlRequested, Record
from streams.topics import ContractError, Topic

__all__ = ["CrawlerThread", "letters_of", "read_to_end", "start_group_at_end", "wait_until_caught_up"]


def _consumer(settings: Settings, group: str) -> Consumer:
    return Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": group, "enable.auto.commit": False})


def _high_watermarks(consumer: Consumer, topic: Topic) -> list[TopicPartition]:
    partitions = consumer.list_topics(topic.name, timeout=10).topics[topic.name].partitions
    return [
        TopicPartition(topic.name, p, consumer.get_watermark_offsets(TopicPartition(topic.name, p), timeout=10)[1])
        for p in partitions
    ]


def start_group_at_end(settings: Settings, group: str, topic: Topic) -> None:
    """The topic is shared: a new group must not crawl every request ever published."""
    consumer = _consumer(settings, group)
    try:
        consumer.commit(offsets=_high_watermarks(consumer, topic), asynchronous=False)
    finally:
        consumer.close()


def wait_until_caught_up(settings: Settings, group: str, topic: Topic, timeout: float = 240.0) -> None:
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


def read_to_end(settings: Settings, topic: Topic, keep: Callable[[Record], bool]) -> list[Record]:
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


class CrawlerThread:
    def __init__(self, settings: Settings, group: str) -> None:
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(settings, group), daemon=True)
        self.thread.start()

    def _run(self, settings: Settings, group: str) -> None:
        try:
            crawler.run(settings, self.stop, group=group)
        except BaseException as exc:
            self.error = exc

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(60)
        assert not self.thread.is_alive(), "crawler did not stop"
        assert self.error is None, repr(self.error)


def letters_of(crawl_id: str) -> Callable[[Record], bool]:
    def keep(letter: Record) -> bool:
        try:
            request = topics.CRAWL_REQUESTS.decode(base64.b64decode(letter.original_base64))
        except ContractError:
            return False
        return isinstance(request, CrawlRequested) and request.crawl_id == crawl_id

    return keep
