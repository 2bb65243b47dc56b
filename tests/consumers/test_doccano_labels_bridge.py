"""The label bridge over all three projects, against the real doccano and Kafka, with two doccano users.

Each test works in doccano projects of its own and withdraws every label it made
when it ends (it deletes its examples and lets the bridge publish the deletions),
so the labels topic holds no judgement of a test for the trainer to learn from.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from consumers.doccano_client import (
    SEQ2SEQ,
    TEXT_CLASSIFICATION,
    ClassificationProject,
    ComparisonPair,
    DoccanoClient,
    ensure_comparison_project,
    ensure_expansion_project,
    ensure_sentiment_project,
    import_comparisons,
)
from consumers.doccano_labels import STAGE, LabelBridge, read_cursor
from consumers.label_snapshots import annotation_label_id
from ctrlgpt import secrets
from ctrlgpt.settings import Settings
from streams import topics
from streams.bus import ensure_topics, make_producer
from streams.records import DeadLetter, LabelRecorded
from streams.topics import Topic

pytestmark = pytest.mark.integration

TESTER = "label-bridge-tester"


def read_to_end(settings: Settings, topic: Topic, keep: Callable[[object], bool]) -> list:
    """Every record of `topic` that `keep` accepts, from the beginning up to the end offsets of now."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"test-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
        }
    )
    try:
        partitions = consumer.list_topics(topic.name, timeout=10).topics[topic.name].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic.name, p), timeout=10)[1] for p in partitions}
        consumer.assign([TopicPartition(topic.name, p, 0) for p in partitions])
        positions = dict.fromkeys(partitions, 0)
        found = []
        while any(positions[p] < ends[p] for p in partitions):
            msg = consumer.poll(1.0)
            if msg is None or msg.error():
                continue
            positions[msg.partition()] = msg.offset() + 1
            if msg.offset() < ends[msg.partition()] and keep(record := topic.decode(msg.value())):
                found.append(record)
        return found
    finally:
        consumer.close()


def labels_of(settings: Settings, *project_ids: int) -> list[LabelRecorded]:
    prefixes = tuple(f"doccano:{project_id}:" for project_id in project_ids)
    return read_to_end(settings, topics.LABELS, lambda record: record.label_id.startswith(prefixes))


@pytest.fixture
def producer(settings: Settings) -> Iterator[Producer]:
    ensure_topics(settings, [topics.LABELS, topics.dead_letter_topic(STAGE)])
    created = make_producer(settings)
    yield created
    created.flush(10)


@pytest.fixture
def tester(settings: Settings, doccano: DoccanoClient) -> Iterator[DoccanoClient]:
    """A second doccano user, logged in (kept between runs: doccano's API cannot delete users)."""
    admin_password = secrets.load_or_create(settings.secrets_file).doccano_password
    password = hmac.new(admin_password.encode(), TESTER.encode(), hashlib.sha256).hexdigest()
    if TESTER not in doccano.usernames().values():
        doccano.create_user(TESTER, password)
    client = DoccanoClient(settings.doccano_url, TESTER, password)
    client.login()
    yield client
    client.close()


@dataclass(frozen=True)
class Projects:
    sentiment: ClassificationProject
    expansion: int
    comparison: ClassificationProject

    @property
    def ids(self) -> tuple[int, int, int]:
        return self.sentiment.id, self.expansion, self.comparison.id


@pytest.fixture
def projects(project_settings: Settings, doccano: DoccanoClient, tester: DoccanoClient) -> Projects:
    """The test's three projects, the tester an annotator of each."""
    made = Projects(
        ensure_sentiment_project(doccano, project_settings.doccano_project),
        ensure_expansion_project(doccano, project_settings.doccano_expansion_project),
        ensure_comparison_project(doccano, project_settings.doccano_comparison_project),
    )
    tester_id = next(user_id for user_id, name in doccano.usernames().items() if name == TESTER)
    for project_id in made.ids:
        doccano.add_member(project_id, tester_id, "annotator")
    return made


@pytest.fixture
def make_bridge(
    project_settings: Settings, doccano: DoccanoClient, projects: Projects, producer: Producer, tmp_path: Path
) -> Iterator[Callable[[], LabelBridge]]:
    """Bridges of the test's projects sharing one cursor directory: a new one is the old one restarted."""
    clients: list[DoccanoClient] = []

    def make() -> LabelBridge:
        client = DoccanoClient(
            project_settings.doccano_url,
            project_settings.doccano_username,
            secrets.load_or_create(project_settings.secrets_file).doccano_password,
        )
        clients.append(client)
        bridge = LabelBridge.from_settings(project_settings, client=client, producer=producer, cursor_dir=tmp_path)
        bridge.setup()
        return bridge

    yield make
    for project_id in projects.ids:
        example_ids = [example["id"] for example in doccano.iter_examples(project_id)]
        if example_ids:
            doccano.delete_examples(project_id, example_ids)
    make().poll_once()
    assert all(read_cursor(tmp_path, project_id).annotations == {} for project_id in projects.ids)
    for client in clients:
        client.close()


def propose(doccano: DoccanoClient, project_id: int, prompt: str, body: str) -> tuple[int, int]:
    """An expansion example as the doccano sink makes it: (example id, the proposal's annotation id)."""
    example = doccano.create_example(project_id, prompt, {"url": f"https://news.test/{uuid.uuid4().hex}.html"})
    return example["id"], doccano.add_text_label(project_id, example["id"], body)["id"]


def summary(events: list[LabelRecorded]) -> set[tuple]:
    return {(e.label_id, e.action, e.annotator, getattr(e.label, "completion", None)) for e in events}


def test_expansions_count_when_checked_or_written_by_a_person(
    doccano: DoccanoClient, tester: DoccanoClient, projects: Projects, make_bridge: Callable[[], LabelBridge]
) -> None:
    project_id = projects.expansion
    checked, checked_proposal = propose(doccano, project_id, "Harbor festival", "The festival drew a crowd.")
    corrected, _ = propose(doccano, project_id, "Storm warning", "Rain is coming.")
    by_admin, admin_proposal = propose(doccano, project_id, "Market day", "Stalls filled the square.")
    bridge = make_bridge()
    assert bridge.poll_once() == []

    tester.confirm_example(project_id, checked)
    correction = tester.add_text_label(project_id, corrected, "Heavy rain and wind are coming tonight.")
    doccano.confirm_example(project_id, by_admin)
    events = bridge.poll_once()
    assert summary(events) == {
        (annotation_label_id(project_id, checked, checked_proposal), "created", TESTER, "The festival drew a crowd."),
        (annotation_label_id(project_id, corrected, correction["id"]), "created", TESTER, correction["text"]),
        (annotation_label_id(project_id, by_admin, admin_proposal), "created", "admin", "Stalls filled the square."),
    }
    assert {e.label.prompt for e in events} == {"Harbor festival", "Storm warning", "Market day"}

    # Edited in place: updated. A person's text on a checked example replaces the approved proposal.
    tester.update_text_label(project_id, corrected, correction["id"], "Heavy rain tonight.")
    late = tester.add_text_label(project_id, checked, "The festival drew a happy crowd.")
    assert summary(bridge.poll_once()) == {
        (annotation_label_id(project_id, corrected, correction["id"]), "updated", TESTER, "Heavy rain tonight."),
        (annotation_label_id(project_id, checked, checked_proposal), "deleted", TESTER, "The festival drew a crowd."),
        (annotation_label_id(project_id, checked, late["id"]), "created", TESTER, "The festival drew a happy crowd."),
    }
    assert bridge.poll_once() == []


def test_comparisons_become_preferences_ties_withdraw_and_bad_examples_are_dead_lettered_once(
    project_settings: Settings,
    doccano: DoccanoClient,
    tester: DoccanoClient,
    projects: Projects,
    make_bridge: Callable[[], LabelBridge],
) -> None:
    project = projects.comparison
    festival = ComparisonPair(prompt="Harbor festival", a="A joyful day.", b="A grim day.", target="positive")
    storm = ComparisonPair(prompt="Storm", a="Boats stayed in.", b="All was calm.", model_version="v0001-test")
    assert import_comparisons(doccano, project.id, [festival, storm]) == 2
    swapped = festival.model_copy(update={"a": festival.b, "b": festival.a})
    assert import_comparisons(doccano, project.id, [festival, swapped]) == 0
    examples = {example["meta"]["prompt"]: example["id"] for example in doccano.iter_examples(project.id)}
    broken = doccano.create_example(project.id, "No pair here.", {"prompt": "No pair here."})["id"]

    first = doccano.add_category(project.id, examples["Harbor festival"], project.label_ids["A better"])
    second = tester.add_category(project.id, examples["Storm"], project.label_ids["B better"])
    bad = doccano.add_category(project.id, broken, project.label_ids["A better"])
    bridge = make_bridge()
    events = {e.label_id: e for e in bridge.poll_once()}
    first_id = annotation_label_id(project.id, examples["Harbor festival"], first["id"])
    second_id = annotation_label_id(project.id, examples["Storm"], second["id"])
    assert events.keys() == {first_id, second_id}
    assert (events[first_id].annotator, events[second_id].annotator) == ("admin", TESTER)
    assert (events[first_id].label.chosen, events[first_id].label.rejected, events[first_id].label.target) == (
        "A joyful day.",
        "A grim day.",
        "positive",
    )
    assert (events[second_id].label.chosen, events[second_id].model_version) == ("All was calm.", "v0001-test")

    assert bridge.poll_once() == []
    bad_id = annotation_label_id(project.id, broken, bad["id"])
    (letter,) = read_to_end(project_settings, topics.dead_letter_topic(STAGE), lambda record: record.key == bad_id)
    assert isinstance(letter, DeadLetter) and "not a comparison" in letter.reason

    # The tester's tie replaces the admin's choice (single-class): that choice is withdrawn, nothing new comes.
    tester.add_category(project.id, examples["Harbor festival"], project.label_ids["tie"])
    (withdrawn,) = bridge.poll_once()
    assert (withdrawn.label_id, withdrawn.action, withdrawn.annotator) == (first_id, "deleted", "admin")


def test_a_restarted_bridge_publishes_each_change_in_every_project_exactly_once(
    project_settings: Settings,
    doccano: DoccanoClient,
    tester: DoccanoClient,
    projects: Projects,
    make_bridge: Callable[[], LabelBridge],
) -> None:
    sentiment, comparison = projects.sentiment, projects.comparison
    sunny = doccano.create_example(sentiment.id, "Sunny skies all week.", {"url": "https://news.test/sun.html"})["id"]
    grim = doccano.create_example(sentiment.id, "Grim news at the docks.", {"url": "https://news.test/d.html"})["id"]
    by_admin = doccano.add_category(sentiment.id, sunny, sentiment.label_ids["positive"])
    by_tester = tester.add_category(sentiment.id, grim, sentiment.label_ids["negative"])
    example, proposal = propose(doccano, projects.expansion, "Harbor festival", "The festival drew a crowd.")
    import_comparisons(doccano, comparison.id, [ComparisonPair(prompt="p", a="Kind words.", b="Cold words.")])
    (pair,) = [e["id"] for e in doccano.iter_examples(comparison.id)]

    before = make_bridge().poll_once()
    assert {(e.label_id, e.annotator) for e in before} == {
        (annotation_label_id(sentiment.id, sunny, by_admin["id"]), "admin"),
        (annotation_label_id(sentiment.id, grim, by_tester["id"]), TESTER),
    }

    # While the bridge is down, in every project: a relabel, a check, a verdict.
    relabel = tester.add_category(sentiment.id, sunny, sentiment.label_ids["negative"])
    tester.confirm_example(projects.expansion, example)
    verdict = tester.add_category(comparison.id, pair, comparison.label_ids["B better"])

    restarted = make_bridge()
    after = restarted.poll_once()
    assert {(e.label_id, e.action, e.annotator) for e in after} == {
        (annotation_label_id(sentiment.id, sunny, by_admin["id"]), "deleted", "admin"),
        (annotation_label_id(sentiment.id, sunny, relabel["id"]), "created", TESTER),
        (annotation_label_id(projects.expansion, example, proposal), "created", TESTER),
        (annotation_label_id(comparison.id, pair, verdict["id"]), "created", TESTER),
    }
    assert restarted.poll_once() == []
    assert make_bridge().poll_once() == []

    on_kafka = Counter((e.label_id, e.action) for e in labels_of(project_settings, *projects.ids))
    assert on_kafka == Counter((e.label_id, e.action) for e in before + after)


def test_the_bridge_makes_every_project_collaborative(
    project_settings: Settings, doccano: DoccanoClient, producer: Producer, tmp_path: Path
) -> None:
    # Without collaborative annotation doccano shows the bridge's user its own labels only.
    for name, kind in (
        (project_settings.doccano_project, TEXT_CLASSIFICATION),
        (project_settings.doccano_expansion_project, SEQ2SEQ),
        (project_settings.doccano_comparison_project, TEXT_CLASSIFICATION),
    ):
        made = doccano.get_or_create_project(
            name, description="test", kind=kind, wanted={"collaborative_annotation": False}
        )
        assert made["collaborative_annotation"] is False
    client = DoccanoClient(
        project_settings.doccano_url,
        project_settings.doccano_username,
        secrets.load_or_create(project_settings.secrets_file).doccano_password,
    )
    with client:
        LabelBridge.from_settings(project_settings, client=client, producer=producer, cursor_dir=tmp_path).setup()
    for name in (
        project_settings.doccano_project,
        project_settings.doccano_expansion_project,
        project_settings.doccano_comparison_project,
    ):
        assert doccano.find_project(name)["collaborative_annotation"] is True
