"""The cleaner: the per-message decision alone, then the faust worker against the real broker."""

from __future__ import annotations

import base64
import signal
import subprocess
import sys
import time
import uuid

import pytest
from confluent_kafka import TopicPartition
from topic_reader import read_records

from ctrlgpt.settings import REPO_ROOT
from streams import bus, cleaner, topics
from streams.cleaner import (
    Cleaned,
    Rejection,
    clean_message,
    clean_messages,
    make_app,
    pack_by_size,
)
from streams.near_duplicates import simhash
from streams.records import PageCleaned, PageFetched
from streams.topics import Topic

ARTICLE = """<html><head><title>Night Trains of Europe</title></head><body>
  <nav><a href="/">Home</a> <a href="/travel">Travel</a></nav>
  <article>
    <p>Night trains are coming back across Europe. Travellers board in the evening, sleep in a couchette
       and wake up in another country, without the queues and the waiting of an airport.</p>
    <p>New operators have bought old sleeping cars and refitted them, and timetables now link cities that
       had lost their direct connections decades ago.</p>
  </article>
  <footer>Copyright Rail Review</footer>
</body></html>"""
OTHER_PAGE = """<html><head><title>Harbour Ferries</title></head><body>
  <article>
    <p>The harbour ferries run every twenty minutes in summer, carrying commuters, cyclists and a few
       tourists between the old town and the islands that close the bay to the west.</p>
    <p>Their crews know most passengers by name, and in winter, when the boats run only every hour,
       the crossing is quiet enough to hear the gulls above the engine.</p>
  </article>
</body></html>"""


def _raw_page(url: str, html: str = ARTICLE) -> PageFetched:
    return PageFetched(url=url, final_url=url, crawl_id="test-cleaner", status=200, html=html)


def test_a_valid_raw_page_becomes_a_clean_page():
    outcome = clean_message(topics.PAGES_RAW.encode(_raw_page("https://rail.example.com/night")), min_chars=100)

    assert isinstance(outcome, PageCleaned)
    assert outcome.title == "Night Trains of Europe"
    assert outcome.crawl_id == "test-cleaner"
    assert "Home" not in outcome.text and "Copyright" not in outcome.text


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"{not json", "not JSON"),
        (b'{"url": "https://rail.example.com/x"}', "invalid PageFetched"),
        (None, "empty message"),
    ],
)
def test_a_message_that_is_not_a_raw_page_is_a_contract_error(value, reason):
    outcome = clean_message(value, min_chars=100)

    assert isinstance(outcome, Rejection)
    assert outcome.error_type == "ContractError"
    assert reason in outcome.reason


def test_a_batch_keeps_each_message_outcome_in_order_with_the_clean_page_fingerprint():
    good = topics.PAGES_RAW.encode(_raw_page("https://rail.example.com/night"))
    other = topics.PAGES_RAW.encode(_raw_page("https://rail.example.com/other", html=OTHER_PAGE))

    outcomes = clean_messages([b"{not json", good, None, other], min_chars=100)

    assert [type(outcome) for outcome in outcomes] == [Rejection, Cleaned, Rejection, Cleaned]
    for message, cleaned in ((good, outcomes[1]), (other, outcomes[3])):
        assert cleaned.page.page.content_sha256 == clean_message(message, min_chars=100).content_sha256
        assert cleaned.page.simhash == simhash(cleaned.page.page.text)
        assert cleaned.encoded_bytes == len(cleaned.page.model_dump_json().encode())
    assert outcomes[1].page.simhash != outcomes[3].page.simhash


def test_a_clean_page_too_large_for_a_message_is_rejected_with_its_size():
    good = topics.PAGES_RAW.encode(_raw_page("https://rail.example.com/night"))
    size = clean_messages([good], min_chars=100)[0].encoded_bytes

    fits, too_large = (
        clean_messages([good, good], min_chars=100, max_page_bytes=size),
        clean_messages([good], min_chars=100, max_page_bytes=size - 1),
    )

    assert [type(outcome) for outcome in fits] == [Cleaned, Cleaned]
    assert too_large == [
        Rejection(
            f"https://rail.example.com/night: clean page of {size} bytes, over the {size - 1} bytes a message may carry",
            "PageTooLarge",
        )
    ]


@pytest.mark.parametrize(
    ("sizes", "groups"),
    [
        ([], []),
        ([3, 3, 3], [[0, 1, 2]]),
        ([6, 5, 4, 1], [[0], [1, 2, 3]]),
        ([11, 2, 9], [[0], [1], [2]]),  # over the bound: alone in its group, never dropped
    ],
)
def test_pages_are_packed_in_order_into_messages_under_the_bound(sizes, groups):
    assert pack_by_size(sizes, 10) == groups


def test_a_page_without_text_is_rejected_with_its_url():
    empty = _raw_page("https://rail.example.com/empty", html="<html><body><nav>Home</nav></body></html>")

    outcome = clean_message(topics.PAGES_RAW.encode(empty), min_chars=100)

    assert outcome == Rejection("https://rail.example.com/empty: no main text found in the HTML", "PageRejected")


def test_a_page_that_breaks_the_extractor_is_rejected_not_fatal(monkeypatch):
    def broken_extractor(fetched, *, min_chars):
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(cleaner, "clean_page", broken_extractor)

    outcome = clean_message(topics.PAGES_RAW.encode(_raw_page("https://rail.example.com/deep")), min_chars=100)

    assert outcome == Rejection(
        "https://rail.example.com/deep: cleaning failed: RecursionError('maximum recursion depth exceeded')",
        "RecursionError",
    )


def test_the_app_reads_its_identity_and_storage_from_settings(settings, tmp_path):
    local = settings.with_overrides([f"data_dir={tmp_path}", "cleaner_app_id=test-cleaner-conf"])

    app = make_app(local)

    assert app.conf.id == "test-cleaner-conf"
    assert app.conf.datadir == tmp_path / "faust" / "test-cleaner-conf"
    assert app.conf.topic_allow_declare is False
    assert app.conf.web_enabled is False
    assert [agent.concurrency for agent in app.agents.values()] == [1, 1]
    assert app.conf.broker_session_timeout == local.cleaner_session_timeout_s
    table = app.tables[cleaner.FINGERPRINTS_TABLE]
    assert table.changelog_topic.get_topic_name() == "test-cleaner-conf-original-fingerprints-changelog"


@pytest.mark.integration
def test_the_worker_cleans_raw_pages_and_dead_letters_the_rest(settings, tmp_path):
    run = uuid.uuid4().hex
    group = f"test-cleaner-{run}"
    bus.ensure_topics(settings, [topics.PAGES_RAW, topics.PAGES_CLEAN, topics.dead_letter_topic("clean")])
    # The raw topic is shared: start the worker's group at its current end so it reads only this test's messages.
    _commit_group_at_end(settings, group, topics.PAGES_RAW.name)

    good = f"https://rail-{run}.example.com/night"
    empty = f"https://rail-{run}.example.com/empty"
    malformed, malformed_value = f"malformed-{run}", b"{not json " + run.encode()
    producer = bus.make_producer(settings)
    bus.publish(producer, topics.PAGES_RAW, _raw_page(good))
    bus.publish(producer, topics.PAGES_RAW, _raw_page(empty, html="<html><body><nav>Home</nav></body></html>"))
    producer.produce(topics.PAGES_RAW.name, key=malformed.encode(), value=malformed_value)
    bus.flush_or_raise(producer)

    log_path = tmp_path / "cleaner.log"
    command = [sys.executable, "-m", "ctrlgpt.cli", "--set", f"cleaner_app_id={group}", "--set", f"data_dir={tmp_path}"]
    with log_path.open("wb") as log_file:
        worker = subprocess.Popen([*command, "cleaner"], cwd=REPO_ROOT, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            cleaned = read_records(
                settings,
                topics.PAGES_CLEAN,
                keep=lambda page: page.url == good,
                until=lambda found: bool(found) or worker.poll() is not None,
                timeout=120,
            )
            letters = read_records(
                settings,
                topics.dead_letter_topic("clean"),
                keep=lambda letter: letter.key in (empty, malformed),
                until=lambda found: len(found) >= 2 or worker.poll() is not None,
                timeout=120,
            )
        finally:
            worker.send_signal(signal.SIGTERM)
            returncode = worker.wait(timeout=60)
    log = log_path.read_text(errors="replace")

    assert [page.title for page in cleaned] == ["Night Trains of Europe"], log
    assert cleaned[0].language == "en" and cleaned[0].domain == f"rail-{run}.example.com"
    by_key = {letter.key: letter for letter in letters}
    assert set(by_key) == {empty, malformed}, log
    assert by_key[empty].error_type == "PageRejected"
    assert by_key[empty].reason == f"{empty}: no main text found in the HTML"
    assert by_key[malformed].error_type == "ContractError"
    assert "not JSON" in by_key[malformed].reason
    assert base64.b64decode(by_key[malformed].original_base64) == malformed_value
    assert all(letter.source_topic == topics.PAGES_RAW.name and letter.stage == "clean" for letter in letters)
    assert returncode == 0, f"the worker did not stop cleanly on SIGTERM:\n{log}"


def _commit_group_at_end(settings, group: str, topic: str) -> None:
    consumer = bus.make_consumer(settings, group)
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions]
        consumer.commit(offsets=[TopicPartition(topic, p, end) for p, end in zip(partitions, ends)], asynchronous=False)
    finally:
        consumer.close()


@pytest.mark.integration
def test_a_partition_whose_committed_offset_is_behind_its_end_is_found(settings):
    from confluent_kafka.admin import AdminClient, NewTopic
    from faust.types import TP

    topic, group = f"test-behind-{uuid.uuid4().hex}", f"test-behind-{uuid.uuid4().hex}"
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])[topic].result()
    producer = bus.make_producer(settings)
    try:
        for partition, messages in ((0, 3), (1, 2), (2, 0)):
            for _n in range(messages):
                producer.produce(topic, value=b"x", partition=partition)
        bus.flush_or_raise(producer)
        positions = bus.make_consumer(settings, group)
        # Partition 0: one of three handled; 1: all handled; 2: empty and never committed.
        positions.commit(offsets=[TopicPartition(topic, 0, 1), TopicPartition(topic, 1, 2)], asynchronous=False)

        behind = cleaner.committed_behind_end(positions, [TP(topic, 0), TP(topic, 1), TP(topic, 2)])
        positions.close()
    finally:
        admin.delete_topics([topic])

    assert behind == {TP(topic, 0): 1}


@pytest.mark.integration
def test_clean_pages_land_on_the_partition_faust_gave_their_url(settings):
    # Clean pages used to be sent by faust (aiokafka's murmur2 partitioner); a URL's later versions must
    # follow its earlier ones on the same partition, or a consumer could apply them out of order.
    from aiokafka.partitioner import DefaultPartitioner
    from confluent_kafka.admin import AdminClient

    topic = Topic(f"ctrlgpt.test.clean-partitions.{uuid.uuid4().hex}", PageCleaned, key="url", partitions=3)
    bus.ensure_topics(settings, [topic])
    urls = [f"https://site-{n}.example.com/page/{n * 7}" for n in range(40)]
    try:
        bus.deliver_all(
            bus.make_producer(settings, **cleaner.CLEAN_PAGES_PRODUCER),
            [bus.Outgoing(topic.name, url.encode(), b"{}") for url in urls],
        )
        consumer = bus.make_consumer(settings, f"test-clean-partitions-{uuid.uuid4().hex}")
        consumer.assign([TopicPartition(topic.name, partition, 0) for partition in range(3)])
        landed: dict[str, int] = {}
        deadline = time.monotonic() + 30
        while len(landed) < len(urls) and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and not message.error():
                landed[message.key().decode()] = message.partition()
        consumer.close()
    finally:
        AdminClient({"bootstrap.servers": settings.kafka_bootstrap}).delete_topics([topic.name])
    faust_partition = DefaultPartitioner()
    assert landed == {url: faust_partition(url.encode(), [0, 1, 2], [0, 1, 2]) for url in urls}
    assert len(set(landed.values())) == 3
