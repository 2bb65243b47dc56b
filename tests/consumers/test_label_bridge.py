"""The label bridge against the real doccano and Kafka, in a doccano project of the test's own."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer, TopicPartition

from consumers.doccano_client import DoccanoClient, ClassificationProject, ensure_sentiment_project
from consumers.doccano_labels import LabelBridge
from consumers.label_snapshots import annotation_label_id
from ctrlgpt import secrets
from ctrlgpt.settings import Settings
from streams import topics
from streams.bus import ensure_topics, make_consumer, make_producer
from streams.records import LabelRecorded

pytestmark = pytest.mark.integration


def labels_of_project(settings: Settings, project_id: int) -> list[LabelRecorded]:
    """Every LabelRecorded of the project on LABELS, read from the beginning up to the current end."""
    consumer = make_consumer(settings, f"test-label-bridge-{uuid.uuid4().hex}")
    try:
        partitions = consumer.list_topics(topics.LABELS.name, timeout=10).topics[topics.LABELS.name].partitions
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topics.LABELS.name, p), timeout=10)[1] for p in partitions
        }
        consumer.assign([TopicPartition(topics.LABELS.name, p, 0) for p in partitions])
        positions = dict.fromkeys(partitions, 0)
        found = []
        while any(positions[p] < ends[p] for p in partitions):
            msg = consumer.poll(1.0)
            if msg is None or msg.error():
                continue
            positions[msg.partition()] = msg.offset() + 1
            record = topics.LABELS.decode(msg.value())
            if record.label_id.startswith(f"doccano:{project_id}:"):
                found.append(record)
        return found
    finally:
        consumer.close()


@pytest.fixture
def producer(settings: Settings) -> Iterator[Producer]:
    ensure_topics(settings, [topics.LABELS])
    created = make_producer(settings)
    yield created
    created.flush(10)


@pytest.fixture
def project(project_settings: Settings, doccano: DoccanoClient) -> ClassificationProject:
    return ensure_sentiment_project(doccano, project_settings.doccano_project)


def make_bridge(settings: Settings, producer: Producer, cursor_dir: Path) -> LabelBridge:
    client = DoccanoClient(
        settings.doccano_url, settings.doccano_username, secrets.load_or_create(settings.secrets_file).doccano_password
    )
    bridge = LabelBridge.from_settings(settings, client=client, producer=producer, cursor_dir=cursor_dir)
    bridge.setup()
    return bridge


def test_annotations_become_label_events_once_and_deletions_follow(
    project_settings: Settings, doccano: DoccanoClient, project: ClassificationProject, producer: Producer, tmp_path: Path
) -> None:
    url = f"https://news.test/{uuid.uuid4().hex}.html"
    example = doccano.create_example(
        project.id, "The harbor festival was a delight.", {"url": url, "passage_key": "k1"}
    )
    doccano.create_example(project.id, "Not labelled by anyone.", {"url": url, "passage_key": "k2"})
    annotation = doccano.add_category(project.id, example["id"], project.label_ids["positive"])
    bridge = make_bridge(project_settings, producer, tmp_path)

    (published,) = bridge.poll_once()
    (event,) = labels_of_project(project_settings, project.id)
    assert event == published
    assert event.label_id == f"doccano:{project.id}:{example['id']}:{annotation['id']}"
    assert (event.action, event.source, event.annotator, event.page_url) == ("created", "doccano", "admin", url)
    assert (event.label.text, event.label.sentiment) == ("The harbor festival was a delight.", "positive")

    assert bridge.poll_once() == []
    assert len(labels_of_project(project_settings, project.id)) == 1

    doccano.delete_category(project.id, example["id"], annotation["id"])
    (deleted,) = bridge.poll_once()
    assert (deleted.action, deleted.label_id, deleted.label.sentiment) == ("deleted", event.label_id, "positive")
    assert [e.action for e in labels_of_project(project_settings, project.id)] == ["created", "deleted"]


def test_a_restarted_bridge_publishes_what_changed_while_it_was_down(
    project_settings: Settings, doccano: DoccanoClient, project: ClassificationProject, producer: Producer, tmp_path: Path
) -> None:
    first = doccano.create_example(project.id, "Grim news from the docks.", {"url": "https://news.test/docks.html"})
    second = doccano.create_example(project.id, "Sunny skies all week.", {"url": "https://news.test/sun.html"})
    kept = doccano.add_category(project.id, first["id"], project.label_ids["negative"])
    make_bridge(project_settings, producer, tmp_path).poll_once()

    # While the bridge is down: one new label, and a relabel (single-class: the old annotation is replaced).
    added = doccano.add_category(project.id, second["id"], project.label_ids["positive"])
    relabel = doccano.add_category(project.id, first["id"], project.label_ids["positive"])

    restarted = make_bridge(project_settings, producer, tmp_path)
    events = restarted.poll_once()
    assert {(e.label_id, e.action, e.label.sentiment) for e in events} == {
        (annotation_label_id(project.id, first["id"], kept["id"]), "deleted", "negative"),
        (annotation_label_id(project.id, first["id"], relabel["id"]), "created", "positive"),
        (annotation_label_id(project.id, second["id"], added["id"]), "created", "positive"),
    }
    assert restarted.poll_once() == []

    # Leave LABELS as the test found it, net: every label the test made is withdrawn.
    for example in (first, second):
        for category in doccano.categories(project.id, example["id"]):
            doccano.delete_category(project.id, example["id"], category["id"])
    assert [(e.action, e.label.sentiment) for e in restarted.poll_once()] == [("deleted", "positive")] * 2
