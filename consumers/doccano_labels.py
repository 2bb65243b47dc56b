"""Label bridge: doccano's annotation changes (Debezium CDC) -> `LabelRecorded` events, exactly once.

doccano has no webhooks; its database does have a write-ahead log. Debezium streams the
changes of doccano's annotation and example tables onto Kafka (deploy.connect); the
bridge consumes them. A change record only says which example changed
(`consumers.doccano_changes`): the bridge reads that example's annotations from doccano's
REST API as they are now, compares them with what it published for the example (its
state) and publishes the difference: `created`, `updated` or `deleted` (how each
project's annotations read is in docs/labels.md and `consumers.label_snapshots`). So its
cost follows the changes, not the number of labelled examples, and it is nothing while
nobody labels.

Exactly once across restarts: the label events, the dead letters, the examples' new
state (a compacted topic, `<label_bridge_group>-state`) and the consumed change offsets
go into Kafka in one transaction. A bridge killed at any point restarts from the last
committed transaction: it reloads the state topic and re-reads the changes after the
committed offsets; what an aborted transaction wrote is never seen by read_committed
consumers (librdkafka's default; the trainer's among them).

doccano away: the bridge pauses its partitions and keeps polling (it stays in its group
however long the outage), then retries the same batch with `ctrlgpt.retry`'s back-off.
Kafka away: the transaction is aborted and made again when Kafka answers.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import structlog
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from consumers.doccano_changes import ExampleChange, MalformedChange, example_change
from consumers.doccano_client import (
    DoccanoClient,
    DoccanoError,
    ensure_comparison_project,
    ensure_expansion_project,
    ensure_sentiment_project,
)
from consumers.label_snapshots import (
    AnnotationSnapshot,
    ProjectSnapshot,
    Rejection,
    comparison_snapshot,
    expansion_snapshot,
    label_events,
    new_rejections,
    sentiment_snapshot,
)
from ctrlgpt import secrets, worker_metrics
from ctrlgpt.lifecycle import stop_on_signals
from ctrlgpt.retry import Backoff, retrying
from ctrlgpt.settings import Settings
from streams import groups, topics
from streams.bus import Outgoing, ServiceUnavailable, dead_letter, ensure_topics, make_consumer, make_producer
from streams.records import LabelRecorded, Record, Stage

__all__ = ["ExampleLabels", "LabelBridge", "Outcome", "change_topics", "main", "state_topic"]

log = structlog.get_logger()

STAGE: Stage = "labels"
BATCH_SIZE = 500
# A dead letter keeps at most this much of what it could not use (a pointer to the offset says where the rest is).
EXCERPT_BYTES = 64 * 1024
TRANSACTION_TIMEOUT_S = 30.0
ProjectKind = Literal["sentiment", "expansion", "comparison"]


class ExampleLabels(Record):
    """What the bridge published for one example: its labels, and fingerprints of its dead-lettered annotations."""

    project_id: int
    example_id: int
    labels: dict[str, AnnotationSnapshot] = {}
    rejected: dict[str, str] = {}

    @property
    def key(self) -> str:
        return example_key(self.project_id, self.example_id)


def example_key(project_id: int, example_id: int) -> str:
    return f"{project_id}:{example_id}"


def state_topic(group: str) -> topics.Topic:
    """The bridge's state: the latest `ExampleLabels` per example (compacted), named after its group
    as faust names a table's changelog; a tombstone when an example has nothing published any more."""
    return topics.Topic(
        f"{group}-state", ExampleLabels, key="key", partitions=1, retention_ms=-1, cleanup_policy="compact"
    )


def change_topics(settings: Settings) -> list[topics.Topic]:
    return [topics.doccano_change_topic(settings.cdc_topic_prefix, table) for table in topics.DOCCANO_CHANGE_TABLES]


@dataclass(frozen=True)
class Project:
    """One project the bridge reads: its kind, id and category types (id -> text)."""

    kind: ProjectKind
    project_id: int
    label_texts: dict[int, str]


@dataclass
class Outcome:
    """What a batch of changes publishes: events, rejections to dead-letter, and each touched example's new state."""

    events: list[LabelRecorded] = field(default_factory=list)
    rejections: list[tuple[int, str, Rejection]] = field(default_factory=list)
    states: dict[tuple[int, int], ExampleLabels | None] = field(default_factory=dict)

    def outgoing(self, state: topics.Topic) -> list[Outgoing]:
        messages = [Outgoing.of(topics.LABELS, event) for event in self.events]
        for project_id, label_id, rejection in self.rejections:
            original = rejection.original_json().encode()
            messages.append(
                dead_letter(
                    STAGE,
                    source_topic=f"doccano:{project_id}",
                    value=original[:EXCERPT_BYTES],
                    reason=_with_size(rejection.reason, len(original)),
                    error_type="AnnotationRejected",
                    key=label_id.encode(),
                )
            )
        for (project_id, example_id), labels in self.states.items():
            if labels is None:  # a tombstone: compaction forgets the example
                messages.append(Outgoing(state.name, example_key(project_id, example_id).encode(), None))  # type: ignore[arg-type]
            else:
                messages.append(Outgoing.of(state, labels))
        return messages


def _with_size(reason: str, size: int) -> str:
    if size <= EXCERPT_BYTES:
        return reason
    return f"{reason} (original {size} bytes; the first {EXCERPT_BYTES} kept)"


class LabelBridge:
    """Turns changed examples into label events against its state (doccano I/O, no Kafka)."""

    def __init__(
        self,
        *,
        client: DoccanoClient,
        sentiment_project: str,
        expansion_project: str,
        comparison_project: str,
        proposer: str,
    ) -> None:
        """`proposer`: the doccano user the doccano sink writes its proposed expansions as."""
        self._client = client
        self._names = (sentiment_project, expansion_project, comparison_project)
        self._proposer = proposer
        self._projects: dict[int, Project] = {}
        self._category_type_projects: dict[int, int] = {}
        self._usernames: dict[int, str] = {}
        self._state: dict[tuple[int, int], ExampleLabels] = {}
        # example id -> project id, learnt from the example rows' changes: tells, without asking
        # doccano, that a change belongs to another project (the cost stays per change of ours).
        self._example_projects: dict[int, int] = {}

    @classmethod
    def from_settings(cls, settings: Settings, *, client: DoccanoClient) -> LabelBridge:
        return cls(
            client=client,
            sentiment_project=settings.doccano_project,
            expansion_project=settings.doccano_expansion_project,
            comparison_project=settings.doccano_comparison_project,
            proposer=settings.doccano_username,
        )

    def setup(self) -> None:
        """Log in, ensure the three projects (collaborative: everyone's labels are read)."""
        self._client.login()
        sentiment_name, expansion_name, comparison_name = self._names
        sentiment = ensure_sentiment_project(self._client, sentiment_name)
        expansion_id = ensure_expansion_project(self._client, expansion_name)
        comparison = ensure_comparison_project(self._client, comparison_name)
        self._projects = {
            sentiment.id: Project("sentiment", sentiment.id, _texts(sentiment.label_ids)),
            expansion_id: Project("expansion", expansion_id, {}),
            comparison.id: Project("comparison", comparison.id, _texts(comparison.label_ids)),
        }
        self._category_type_projects = {
            type_id: project.project_id for project in self._projects.values() for type_id in project.label_texts
        }
        log.info("label_bridge.ready", projects={p.kind: p.project_id for p in self._projects.values()})

    def load(self, states: Iterable[ExampleLabels]) -> None:
        """The state as the last committed transaction left it."""
        self._state = {(s.project_id, s.example_id): s for s in states}
        for project_id, example_id in self._state:
            self._example_projects[example_id] = project_id
        log.info("label_bridge.state_loaded", examples=len(self._state))

    def changes(self, changes: Iterable[ExampleChange]) -> Outcome:
        """Read each changed example once and return what to publish; the state is left as it is (`apply`)."""
        if not self._projects:
            raise RuntimeError("setup() first")
        to_read: dict[int, set[ProjectKind]] = {}
        for change in changes:
            if change.project_id is not None:
                self._example_projects[change.example_id] = change.project_id
            elif change.category_type_id is not None:
                # Category types are per project: a type of none of ours is another project's example.
                owner = self._category_type_projects.get(change.category_type_id)
                if owner is None:
                    continue
                self._example_projects[change.example_id] = owner
            if not change.created:
                kinds = to_read.setdefault(change.example_id, set())
                kinds.update(("expansion",) if change.text_annotation else ("sentiment", "expansion", "comparison"))
        outcome = Outcome()
        for example_id, kinds in sorted(to_read.items()):
            for project in self._projects_of(example_id, kinds):
                self._compare(project, example_id, outcome)
        return outcome

    def apply(self, outcome: Outcome) -> None:
        """Once the outcome's transaction is committed: it becomes the state."""
        for ref, labels in outcome.states.items():
            if labels is None:
                self._state.pop(ref, None)
            else:
                self._state[ref] = labels

    def _projects_of(self, example_id: int, kinds: set[ProjectKind]) -> Iterator[Project]:
        known = self._example_projects.get(example_id)
        if known is not None:
            if known in self._projects:
                yield self._projects[known]
            return
        # Not seen yet (its row's change is on another topic, maybe later in the stream): ask the
        # projects it may belong to (a text annotation or a check mark: the expansion project only).
        for project in self._projects.values():
            if project.kind not in kinds:
                continue
            if self._client.get_example(project.project_id, example_id) is not None:
                self._example_projects[example_id] = project.project_id
                yield project
                return

    def _compare(self, project: Project, example_id: int, outcome: Outcome) -> None:
        ref = (project.project_id, example_id)
        before = self._state.get(ref) or ExampleLabels(project_id=project.project_id, example_id=example_id)
        now = self._read(project, example_id)
        events = label_events(before.labels, now.labels)
        rejections = new_rejections(before.rejected, now.rejected)
        fingerprints = {label_id: r.fingerprint for label_id, r in now.rejected.items()}
        if not events and fingerprints == before.rejected:
            return
        outcome.events.extend(events)
        outcome.rejections.extend((project.project_id, label_id, r) for label_id, r in rejections.items())
        empty = not now.labels and not fingerprints
        outcome.states[ref] = (
            None
            if empty
            else ExampleLabels(
                project_id=project.project_id, example_id=example_id, labels=now.labels, rejected=fingerprints
            )
        )

    def _read(self, project: Project, example_id: int) -> ProjectSnapshot:
        """The example's labels now; none when it is gone."""
        example = self._client.get_example(project.project_id, example_id)
        if example is None:
            return ProjectSnapshot()
        if project.kind == "expansion":
            texts = self._client.text_labels(project.project_id, example_id)
            if not texts:
                return ProjectSnapshot()
            return expansion_snapshot(
                project.project_id,
                example,
                texts,
                proposer=self._proposer,
                confirmed_by=self._confirmer(project.project_id, example) if example["is_confirmed"] else None,
                usernames=self._names_of(t["user"] for t in texts),
            )
        categories = self._client.categories(project.project_id, example_id)
        snapshot_of = sentiment_snapshot if project.kind == "sentiment" else comparison_snapshot
        usernames = self._names_of(c["user"] for c in categories)
        return snapshot_of(project.project_id, example, categories, project.label_texts, usernames)

    def _confirmer(self, project_id: int, example: dict[str, Any]) -> str | None:
        """Who checked the example first (a collaborative project keeps everyone's checks)."""
        states = sorted(self._client.example_states(project_id, example["id"]), key=lambda state: state["id"])
        if not states:
            return None
        user_id = states[0]["confirmed_by"]
        return self._names_of([user_id]).get(user_id, f"user-{user_id}")

    def _names_of(self, user_ids: Iterable[int]) -> dict[int, str]:
        """User id -> name, asking doccano again only when a user is new to the bridge."""
        if any(user_id not in self._usernames for user_id in user_ids):
            self._usernames = self._client.usernames()
        return self._usernames


def _texts(label_ids: dict[str, int]) -> dict[int, str]:
    return {type_id: text for text, type_id in label_ids.items()}


# -- Kafka: the state, the batches, the transactions


def read_state(settings: Settings, state: topics.Topic, stop: threading.Event) -> list[ExampleLabels]:
    """The latest committed state of every example, read from the start of the state topic to its end."""
    consumer = make_consumer(
        settings, groups.label_bridge_state_reader(settings.label_bridge_group), **{"enable.partition.eof": True}
    )
    try:
        partitions = consumer.list_topics(state.name, timeout=30).topics[state.name].partitions
        consumer.assign([TopicPartition(state.name, p, OFFSET_BEGINNING) for p in partitions])
        latest: dict[str, ExampleLabels | None] = {}
        at_end: set[int] = set()
        while len(at_end) < len(partitions) and not stop.is_set():
            message = consumer.poll(1.0)
            if message is None:
                continue
            if message.error():
                if message.error().code() == KafkaError._PARTITION_EOF:
                    at_end.add(message.partition())
                else:
                    log.warning("label_bridge.state_read_error", error=str(message.error()))
                continue
            at_end.discard(message.partition())
            value = message.value()
            latest[message.key().decode()] = None if value is None else state.decode(value)  # type: ignore[misc]
        return [labels for labels in latest.values() if labels is not None]
    finally:
        consumer.close()


class TransactionAborted(RuntimeError):
    """Kafka did not take the transaction (away, or a retriable error); it was aborted and can be made again."""


def commit_batch(
    producer: Producer, consumer: Consumer, messages: list[Outgoing], offsets: list[TopicPartition]
) -> None:
    """Publish `messages` and commit the consumed `offsets` in one transaction, or abort it whole."""
    producer.begin_transaction()
    try:
        for message in messages:
            while True:
                try:
                    producer.produce(message.topic, key=message.key, value=message.value)
                    break
                except BufferError:
                    producer.poll(0.5)
        metadata = consumer.consumer_group_metadata()
        _again_while_retriable(lambda: producer.send_offsets_to_transaction(offsets, metadata, TRANSACTION_TIMEOUT_S))
        _again_while_retriable(lambda: producer.commit_transaction(TRANSACTION_TIMEOUT_S))
    except KafkaException as exc:
        error: KafkaError = exc.args[0]
        if error.fatal():  # fenced by a newer bridge with the same transactional.id, say: stop
            raise
        _again_while_retriable(lambda: producer.abort_transaction(TRANSACTION_TIMEOUT_S))
        raise TransactionAborted(str(error)) from exc


def _again_while_retriable(call: Callable[[], object], give_up_after_s: float = 300.0) -> None:
    """librdkafka's transactional calls may be called again after a retriable error (Kafka away a while)."""
    backoff, deadline = Backoff(), time.monotonic() + give_up_after_s
    while True:
        try:
            call()
            return
        except KafkaException as exc:
            if not exc.args[0].retriable() or time.monotonic() > deadline:
                raise
            delay = backoff.next_delay()
            log.warning("label_bridge.kafka_retry", error=str(exc.args[0]), retry_in_s=round(delay, 2))
            time.sleep(delay)


def next_offsets(messages: Iterable[Message]) -> list[TopicPartition]:
    """The offsets to commit after `messages`: one past the last of each partition."""
    ends: dict[tuple[str, int], int] = {}
    for message in messages:
        ref = (message.topic(), message.partition())
        ends[ref] = max(ends.get(ref, -1), message.offset() + 1)
    return [TopicPartition(topic, partition, offset) for (topic, partition), offset in sorted(ends.items())]


def read_batch(consumer: Consumer, timeout: float) -> list[Message]:
    """Wait up to `timeout` for one change, then take what else has arrived (no waiting for a full batch)."""
    first = consumer.poll(timeout)
    if first is None:
        return []
    return [first, *consumer.consume(BATCH_SIZE - 1, timeout=0)]


def parse(messages: list[Message]) -> tuple[list[ExampleChange], list[Outgoing]]:
    """The changes the messages say, and a dead letter for each one that says none."""
    changes, letters = [], []
    for message in messages:
        try:
            change = example_change(message.topic(), message.value())
        except MalformedChange as exc:
            value = message.value() or b""
            letters.append(
                dead_letter(
                    STAGE,
                    source_topic=message.topic(),
                    partition=message.partition(),
                    offset=message.offset(),
                    key=message.key(),
                    value=value[:EXCERPT_BYTES],
                    reason=_with_size(str(exc), len(value)),
                    error_type="MalformedChange",
                )
            )
            continue
        if change is not None:
            changes.append(change)
    return changes, letters


class Runner:
    """The bridge's loop: batches of changes in, transactions out; outages are pauses."""

    def __init__(self, settings: Settings, bridge: LabelBridge, stop: threading.Event) -> None:
        self._settings = settings
        self._bridge = bridge
        self._stop = stop
        self._state = state_topic(settings.label_bridge_group)
        self._revoked = False
        self._producer = make_producer(
            settings,
            **{
                "transactional.id": settings.label_bridge_group,
                "transaction.timeout.ms": 60_000,
                "delivery.timeout.ms": 60_000,
            },
        )
        poll_interval = settings.label_bridge_max_poll_interval_ms
        self._consumer = make_consumer(
            settings,
            settings.label_bridge_group,
            **{
                "isolation.level": "read_committed",
                "max.poll.interval.ms": poll_interval,
                "session.timeout.ms": min(45_000, poll_interval),
            },
        )

    def run(self) -> None:
        # Fences an earlier bridge and aborts what it left open, before the state is read.
        for attempt in retrying(KafkaException, what="kafka transactions", stop=self._stop):
            with attempt:
                self._producer.init_transactions(TRANSACTION_TIMEOUT_S)
        self._when_doccano_answers(self._bridge.setup)
        self._bridge.load(read_state(self._settings, self._state, self._stop))
        self._consumer.subscribe([t.name for t in change_topics(self._settings)], on_revoke=self._on_revoke)
        try:
            while not self._stop.is_set():
                self._step()
        finally:
            self._consumer.close()

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # The batch in hand belongs to whoever gets the partitions now: it is dropped uncommitted.
        self._revoked = True

    def _step(self) -> None:
        messages = [m for m in read_batch(self._consumer, 1.0) if not self._error(m)]
        if not messages:
            return
        self._revoked = False
        changes, letters = parse(messages)
        outcome = self._paused_until_doccano_answers(lambda: self._bridge.changes(changes))
        if outcome is None:
            return
        outgoing = letters + outcome.outgoing(self._state)
        backoff = Backoff()
        while not self._stop.is_set():
            try:
                commit_batch(self._producer, self._consumer, outgoing, next_offsets(messages))
            except TransactionAborted as exc:
                worker_metrics.ERRORS.labels(STAGE, type(exc).__name__).inc()
                delay = backoff.next_delay()
                log.warning("label_bridge.transaction_aborted", error=str(exc), retry_in_s=round(delay, 2))
                self._stop.wait(delay)
                continue
            self._bridge.apply(outcome)
            worker_metrics.RECORDS.labels(STAGE).inc(len(messages))
            if outcome.events or letters or outcome.rejections:
                log.info(
                    "label_bridge.published",
                    changes=len(messages),
                    events=len(outcome.events),
                    dead_letters=len(letters) + len(outcome.rejections),
                )
            return

    def _error(self, message: Message) -> bool:
        if message.error() is None:
            return False
        log.warning("label_bridge.consumer_error", error=str(message.error()))
        return True

    def _when_doccano_answers(self, call: Any) -> Any:
        for attempt in retrying((ServiceUnavailable, DoccanoError), what="doccano", stop=self._stop):
            with attempt:
                return call()
        return None

    def _paused_until_doccano_answers(self, compute: Any) -> Outcome | None:
        """`compute()`, retried while doccano is away, the partitions paused and the consumer polled meanwhile.

        None when the bridge is stopping or its partitions were revoked during the wait.
        """
        backoff, paused, logged_in = Backoff(), False, True
        try:
            while True:
                try:
                    if not logged_in:
                        self._bridge.setup()
                        logged_in = True
                    return compute()
                except ServiceUnavailable as exc:
                    error = str(exc)
                except DoccanoError as exc:
                    # A refused request (token revoked, a project made again): log in and look the projects up anew.
                    error, logged_in = str(exc), False
                if not paused:
                    self._consumer.pause(self._consumer.assignment())
                    paused = True
                delay = backoff.next_delay()
                log.warning("label_bridge.doccano_away", error=error, retry_in_s=round(delay, 2))
                deadline = time.monotonic() + delay
                while time.monotonic() < deadline:
                    # Polling keeps the bridge in its group, however long doccano is away.
                    message = self._consumer.poll(min(1.0, max(0.0, deadline - time.monotonic())))
                    if message is not None and message.error() is None:
                        # A partition assigned during the pause is not paused: give the record back.
                        self._consumer.seek(TopicPartition(message.topic(), message.partition(), message.offset()))
                        self._consumer.pause(self._consumer.assignment())
                    if self._stop.is_set() or self._revoked:
                        return None
        finally:
            if paused:
                self._consumer.resume(self._consumer.assignment())


def main(settings: Settings, args: argparse.Namespace) -> int:
    stop = stop_on_signals()
    wanted = [
        topics.LABELS,
        topics.dead_letter_topic(STAGE),
        state_topic(settings.label_bridge_group),
        *change_topics(settings),
    ]
    for attempt in retrying(ServiceUnavailable, what="kafka topics", stop=stop):
        with attempt:
            ensure_topics(settings, wanted)
    client = DoccanoClient(
        settings.doccano_url, settings.doccano_username, secrets.load_or_create(settings.secrets_file).doccano_password
    )
    try:
        Runner(settings, LabelBridge.from_settings(settings, client=client), stop).run()
    finally:
        client.close()
    return 0
