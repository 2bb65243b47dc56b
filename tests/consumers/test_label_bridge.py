"""The label bridge on change data capture, against the real doccano, PostgreSQL, Kafka Connect + Debezium
and Kafka, with two doccano users. The bridge runs as its own process (`ctrlgpt label-bridge`).

Each test works in doccano projects of its own, with a consumer group (and transactional id)
of its own, and withdraws every label it made when it ends (it deletes its examples and waits
for the bridge to publish the deletions), so the labels topic holds no judgement of a test for
the trainer to learn from.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import signal
import subprocess
import sys
import time
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
from consumers.doccano_labels import EXCERPT_BYTES, STAGE, LabelBridge
from consumers.label_snapshots import annotation_label_id
from ctrlgpt import secrets
from ctrlgpt.settings import REPO_ROOT, Settings
from deploy.postgres import server as postgres
from streams import topics
from streams.records import DeadLetter, LabelRecorded
from streams.topics import Topic
from tests.faults import kill_service, start_service

pytestmark = pytest.mark.integration

TESTER = "label-bridge-tester"
SETTLE_S = 3.0  # after the expected events: long enough for a duplicate to show up


def read_to_end(settings: Settings, topic: Topic, keep: Callable[[object], bool]) -> list:
    """Every committed record of `topic` that `keep` accepts, from the beginning up to the end offsets of now."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"test-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
        }
    )
    try:
        partitions = consumer.list_topics(topic.name, timeout=10).topics[topic.name].partitions
        consumer.assign([TopicPartition(topic.name, p, 0) for p in partitions])
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic.name, p), timeout=10)[1] for p in partitions}
        found = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            positions = consumer.position([TopicPartition(topic.name, p) for p in partitions])
            # read_committed: transaction markers are skipped, so the position is what tells the end.
            if all(tp.offset >= ends[tp.partition] or (tp.offset < 0 and ends[tp.partition] == 0) for tp in positions):
                break
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            if keep(record := topic.decode(msg.value())):
                found.append(record)
        return found
    finally:
        consumer.close()


def labels_of(settings: Settings, *project_ids: int) -> list[LabelRecorded]:
    prefixes = tuple(f"doccano:{project_id}:" for project_id in project_ids)
    return read_to_end(settings, topics.LABELS, lambda record: record.label_id.startswith(prefixes))


def wait_for_labels(
    settings: Settings, project_ids: tuple[int, ...], count: int, timeout: float = 90
) -> list[LabelRecorded]:
    """The projects' label events once there are `count` of them, and SETTLE_S later (a duplicate would show)."""
    deadline = time.monotonic() + timeout
    while len(found := labels_of(settings, *project_ids)) < count:
        assert time.monotonic() < deadline, f"{len(found)} label events of {count} after {timeout}s"
        time.sleep(0.5)
    time.sleep(SETTLE_S)
    return labels_of(settings, *project_ids)


@dataclass(frozen=True)
class Projects:
    sentiment: ClassificationProject
    expansion: int
    comparison: ClassificationProject

    @property
    def ids(self) -> tuple[int, int, int]:
        return self.sentiment.id, self.expansion, self.comparison.id


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


class BridgeProcess:
    """`ctrlgpt label-bridge` on the test's projects and group, as a child process that can be SIGKILLed."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self._overrides = [
            f"{name}={getattr(settings, name)}"
            for name in (
                "doccano_project",
                "doccano_expansion_project",
                "doccano_comparison_project",
                "label_bridge_group",
            )
        ]
        self._log_path = log_path
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> None:
        """Start it and wait until it has loaded its state and follows the changes."""
        command = [sys.executable, "-m", "ctrlgpt.cli"]
        for override in self._overrides:
            command += ["--set", override]
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        logged_before = self._log_path.stat().st_size if self._log_path.exists() else 0
        with self._log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                [*command, "label-bridge"], cwd=REPO_ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while b"label_bridge.state_loaded" not in self._log_path.read_bytes()[logged_before:]:
            assert self.alive(), self._log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, f"the bridge did not start within {timeout}s"
            time.sleep(0.2)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


@pytest.fixture
def bridge_settings(project_settings: Settings) -> Settings:
    return project_settings.with_overrides([f"label_bridge_group=test-label-bridge-{uuid.uuid4().hex[:10]}"])


@pytest.fixture
def bridge(
    bridge_settings: Settings, doccano: DoccanoClient, projects: Projects, tmp_path: Path
) -> Iterator[BridgeProcess]:
    process = BridgeProcess(bridge_settings, tmp_path / "label-bridge.log")
    process.start()
    yield process
    try:
        # Withdraw the test's labels: delete its examples, let the bridge publish the deletions.
        for project_id in projects.ids:
            example_ids = [example["id"] for example in doccano.iter_examples(project_id)]
            if example_ids:
                doccano.delete_examples(project_id, example_ids)
        if not process.alive():
            process.start()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            latest: dict[str, str] = {}
            for event in labels_of(bridge_settings, *projects.ids):
                latest[event.label_id] = event.action
            if all(action == "deleted" for action in latest.values()):
                break
            time.sleep(1)
        assert all(action == "deleted" for action in latest.values()), latest
    finally:
        assert process.stop() == 0, (tmp_path / "label-bridge.log").read_text()[-3000:]


def propose(doccano: DoccanoClient, project_id: int, prompt: str, body: str) -> tuple[int, int]:
    """An expansion example as the doccano sink makes it: (example id, the proposal's annotation id)."""
    example = doccano.create_example(project_id, prompt, {"url": f"https://news.test/{uuid.uuid4().hex}.html"})
    return example["id"], doccano.add_text_label(project_id, example["id"], body)["id"]


def summary(events: list[LabelRecorded]) -> set[tuple]:
    return {(e.label_id, e.action, e.annotator, getattr(e.label, "completion", None)) for e in events}


def test_sentiment_labels_made_changed_and_deleted_through_the_rest_api_become_exactly_those_events(
    bridge_settings: Settings, doccano: DoccanoClient, tester: DoccanoClient, projects: Projects, bridge: BridgeProcess
) -> None:
    project = projects.sentiment
    url = f"https://news.test/{uuid.uuid4().hex}.html"
    festival = doccano.create_example(project.id, "The harbor festival was a delight.", {"url": url})["id"]
    doccano.create_example(project.id, "Not labelled by anyone.", {"url": url})
    first = doccano.add_category(project.id, festival, project.label_ids["positive"])
    (created,) = wait_for_labels(bridge_settings, (project.id,), 1)
    assert created.label_id == annotation_label_id(project.id, festival, first["id"])
    assert (created.action, created.source, created.annotator, created.page_url) == ("created", "doccano", "admin", url)
    assert (created.label.text, created.label.sentiment) == ("The harbor festival was a delight.", "positive")

    # A relabel by another user replaces the admin's label (single-class project): deleted, then created.
    relabel = tester.add_category(project.id, festival, project.label_ids["negative"])
    relabel_id = annotation_label_id(project.id, festival, relabel["id"])
    events = wait_for_labels(bridge_settings, (project.id,), 3)
    # (Events of different labels may sit in different partitions: compared without their order.)
    assert Counter((e.label_id, e.action, e.annotator, e.label.sentiment) for e in events) == Counter(
        [
            (created.label_id, "created", "admin", "positive"),
            (created.label_id, "deleted", "admin", "positive"),
            (relabel_id, "created", TESTER, "negative"),
        ]
    )

    tester.delete_category(project.id, festival, relabel["id"])
    events = wait_for_labels(bridge_settings, (project.id,), 4)
    assert [(e.action, e.label.sentiment) for e in events if e.label_id == relabel_id] == [
        ("created", "negative"),
        ("deleted", "negative"),
    ]
    assert len(events) == 4


def test_expansions_count_when_checked_or_written_by_a_person(
    bridge_settings: Settings, doccano: DoccanoClient, tester: DoccanoClient, projects: Projects, bridge: BridgeProcess
) -> None:
    project_id = projects.expansion
    checked, checked_proposal = propose(doccano, project_id, "Harbor festival", "The festival drew a crowd.")
    corrected, _ = propose(doccano, project_id, "Storm warning", "Rain is coming.")
    by_admin, admin_proposal = propose(doccano, project_id, "Market day", "Stalls filled the square.")

    tester.confirm_example(project_id, checked)
    correction = tester.add_text_label(project_id, corrected, "Heavy rain and wind are coming tonight.")
    doccano.confirm_example(project_id, by_admin)
    events = wait_for_labels(bridge_settings, (project_id,), 3)
    assert summary(events) == {
        (annotation_label_id(project_id, checked, checked_proposal), "created", TESTER, "The festival drew a crowd."),
        (annotation_label_id(project_id, corrected, correction["id"]), "created", TESTER, correction["text"]),
        (annotation_label_id(project_id, by_admin, admin_proposal), "created", "admin", "Stalls filled the square."),
    }
    assert {e.label.prompt for e in events} == {"Harbor festival", "Storm warning", "Market day"}

    # Edited in place: updated. A person's text on a checked example replaces the approved proposal.
    tester.update_text_label(project_id, corrected, correction["id"], "Heavy rain tonight.")
    late = tester.add_text_label(project_id, checked, "The festival drew a happy crowd.")
    assert summary(wait_for_labels(bridge_settings, (project_id,), 6)) - summary(events) == {
        (annotation_label_id(project_id, corrected, correction["id"]), "updated", TESTER, "Heavy rain tonight."),
        (annotation_label_id(project_id, checked, checked_proposal), "deleted", TESTER, "The festival drew a crowd."),
        (annotation_label_id(project_id, checked, late["id"]), "created", TESTER, "The festival drew a happy crowd."),
    }


def test_comparisons_become_preferences_ties_withdraw_and_bad_examples_are_dead_lettered_once(
    bridge_settings: Settings, doccano: DoccanoClient, tester: DoccanoClient, projects: Projects, bridge: BridgeProcess
) -> None:
    project = projects.comparison
    festival = ComparisonPair(prompt="Harbor festival", a="A joyful day.", b="A grim day.", target="positive")
    storm = ComparisonPair(prompt="Storm", a="Boats stayed in.", b="All was calm.", model_version="v0001-test")
    assert import_comparisons(doccano, project.id, [festival, storm]) == 2
    examples = {example["meta"]["prompt"]: example["id"] for example in doccano.iter_examples(project.id)}
    broken = doccano.create_example(project.id, "No pair here.", {"prompt": "No pair here."})["id"]

    first = doccano.add_category(project.id, examples["Harbor festival"], project.label_ids["A better"])
    second = tester.add_category(project.id, examples["Storm"], project.label_ids["B better"])
    bad = doccano.add_category(project.id, broken, project.label_ids["A better"])
    events = {e.label_id: e for e in wait_for_labels(bridge_settings, (project.id,), 2)}
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
    bad_id = annotation_label_id(project.id, broken, bad["id"])
    (letter,) = read_to_end(bridge_settings, topics.dead_letter_topic(STAGE), lambda record: record.key == bad_id)
    assert isinstance(letter, DeadLetter) and "not a comparison" in letter.reason

    # The tester's tie replaces the admin's choice (single-class): that choice is withdrawn, nothing new comes.
    tester.add_category(project.id, examples["Harbor festival"], project.label_ids["tie"])
    later = wait_for_labels(bridge_settings, (project.id,), 3)
    assert [(e.action, e.annotator) for e in later if e.label_id == first_id] == [
        ("created", "admin"),
        ("deleted", "admin"),
    ]
    assert len(later) == 3


def test_a_bridge_killed_in_a_burst_publishes_every_label_event_exactly_once(
    bridge_settings: Settings, doccano: DoccanoClient, tester: DoccanoClient, projects: Projects, bridge: BridgeProcess
) -> None:
    project = projects.sentiment
    example_ids = [doccano.create_example(project.id, f"Passage {i} of the burst.", {})["id"] for i in range(40)]
    made = []
    for i, example_id in enumerate(example_ids):
        made.append(tester.add_category(project.id, example_id, project.label_ids["positive" if i % 2 else "negative"]))
        if i == 15:
            # Mid-burst, once it has published some: whatever it had in flight is committed whole or not at all.
            wait_for_labels(bridge_settings, (project.id,), 1)
            bridge.kill()
    bridge.start()
    events = wait_for_labels(bridge_settings, (project.id,), len(made))
    assert Counter((e.label_id, e.action) for e in events) == Counter(
        (annotation_label_id(project.id, example_id, annotation["id"]), "created")
        for example_id, annotation in zip(example_ids, made, strict=True)
    )


def test_doccano_and_postgres_stopped_while_the_bridge_runs_pause_it_and_nothing_is_missed(
    project_settings: Settings, doccano: DoccanoClient, projects: Projects, tmp_path: Path
) -> None:
    # An outage longer than max.poll.interval.ms: the bridge keeps polling (paused), so it stays in its group.
    settings = project_settings.with_overrides(
        [f"label_bridge_group=test-label-bridge-{uuid.uuid4().hex[:10]}", "label_bridge_max_poll_interval_ms=6000"]
    )
    log_path = tmp_path / "label-bridge.log"
    bridge = BridgeProcess(settings, log_path)
    bridge.start()
    project = projects.sentiment
    example_ids = [doccano.create_example(project.id, f"Passage {i} of the outage.", {})["id"] for i in range(10)]
    admin_id = next(user_id for user_id, name in doccano.usernames().items() if name == settings.doccano_username)
    kill_service(settings, "doccano")
    # Labels written while doccano is away (straight into its tables, as a second doccano would):
    # their changes reach the bridge, which cannot read the examples until doccano is back.
    rows = ", ".join(
        f"(0, false, now(), now(), {example_id}, {project.label_ids['positive']}, {admin_id}, gen_random_uuid())"
        for example_id in example_ids
    )
    inserted = postgres.psql(
        settings,
        "INSERT INTO labels_category (prob, manual, created_at, updated_at, example_id, label_id, user_id, uuid) "
        f"VALUES {rows} RETURNING id, example_id;",
        database=settings.doccano_database,
    )
    made = [tuple(map(int, line.split("|"))) for line in inserted.split()]
    deadline = time.monotonic() + 60
    while b"label_bridge.doccano_away" not in log_path.read_bytes():
        assert time.monotonic() < deadline, "the bridge never found doccano away"
        time.sleep(0.5)
    kill_service(settings, "postgres")
    time.sleep(12)  # twice max.poll.interval.ms
    assert bridge.alive()
    start_service(settings, "postgres")
    start_service(settings, "doccano")
    start_service(settings, "connect")  # restarts Debezium's task if PostgreSQL's loss failed it
    doccano.login()
    later = doccano.create_example(project.id, "A passage after the outage.", {})["id"]
    made_later = doccano.add_category(project.id, later, project.label_ids["negative"])
    try:
        events = wait_for_labels(settings, (project.id,), len(made) + 1, timeout=180)
        assert bridge.alive()
        expected = [(annotation_label_id(project.id, example_id, label_id), "created") for label_id, example_id in made]
        expected.append((annotation_label_id(project.id, later, made_later["id"]), "created"))
        assert Counter((e.label_id, e.action) for e in events) == Counter(expected)
        assert b"maximum poll interval" not in log_path.read_bytes()
    finally:
        doccano.delete_examples(project.id, [*example_ids, later])
        wait_for_labels(settings, (project.id,), 2 * (len(made) + 1))
        assert bridge.stop() == 0, log_path.read_text()[-3000:]


def test_a_malformed_change_record_is_dead_lettered_with_an_excerpt_and_the_bridge_goes_on(
    bridge_settings: Settings, doccano: DoccanoClient, projects: Projects, bridge: BridgeProcess
) -> None:
    topic = topics.doccano_change_topic(bridge_settings.cdc_topic_prefix, "labels_category").name
    key = f"malformed-{uuid.uuid4().hex}".encode()
    producer = Producer({"bootstrap.servers": bridge_settings.kafka_bootstrap, "message.max.bytes": 8 * 1024 * 1024})
    producer.produce(topic, key=key, value=b"{ not json" + b"x" * (EXCERPT_BYTES * 4))
    assert producer.flush(30) == 0
    deadline = time.monotonic() + 60
    while not (
        letters := read_to_end(bridge_settings, topics.dead_letter_topic(STAGE), lambda r: r.key == key.decode())
    ):
        assert time.monotonic() < deadline, "no dead letter for the malformed change"
        time.sleep(1)
    (letter,) = letters
    assert (letter.source_topic, letter.error_type) == (topic, "MalformedChange")
    assert "not JSON" in letter.reason and letter.offset is not None
    # The bridge went on: a label after the bad record is published.
    example = doccano.create_example(projects.sentiment.id, "After the bad record.", {})["id"]
    doccano.add_category(projects.sentiment.id, example, projects.sentiment.label_ids["positive"])
    assert len(wait_for_labels(bridge_settings, (projects.sentiment.id,), 1)) == 1
    assert bridge.alive()


def test_the_bridge_makes_every_project_collaborative(project_settings: Settings, doccano: DoccanoClient) -> None:
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
        LabelBridge.from_settings(project_settings, client=client).setup()
    for name in (
        project_settings.doccano_project,
        project_settings.doccano_expansion_project,
        project_settings.doccano_comparison_project,
    ):
        assert doccano.find_project(name)["collaborative_annotation"] is True
