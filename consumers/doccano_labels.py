"""Label bridge: doccano annotations -> `LabelRecorded` events on `topics.LABELS`.

doccano has no webhooks, so the bridge polls its three projects (sentiment,
expansions, comparisons; how each reads is in docs/labels.md and
`consumers.label_snapshots`). Each poll reads a project's annotations, compares
them with that project's cursor (the annotations already published) and publishes
what changed: `created`, `updated` or `deleted`; an annotation that cannot become
a label is dead-lettered once. The cursor file is replaced atomically only after
Kafka acknowledged the events, so a restart publishes exactly what changed while
the bridge was down; only a crash between the acknowledgement and the cursor's
replacement repeats that poll's events, identical, which latest-per-label_id
consumers take as they are.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import structlog
from confluent_kafka import Producer
from pydantic import BaseModel, ConfigDict

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
    comparison_snapshot,
    expansion_snapshot,
    label_events,
    new_rejections,
    sentiment_snapshot,
)
from ctrlgpt import secrets
from ctrlgpt.lifecycle import stop_on_signals
from ctrlgpt.settings import Settings
from streams import topics
from streams.bus import ServiceUnavailable, ensure_topics, flush_or_raise, make_producer, publish, send_dead_letter
from streams.records import LabelRecorded

__all__ = ["Cursor", "LabelBridge", "read_cursor", "write_cursor", "main"]

log = structlog.get_logger()

STAGE = "labels"
ProjectKind = Literal["sentiment", "expansion", "comparison"]


class Cursor(BaseModel):
    """One project's published state: its labels, and the fingerprints of the annotations dead-lettered."""

    model_config = ConfigDict(extra="forbid")
    project_id: int
    annotations: dict[str, AnnotationSnapshot] = {}
    rejected: dict[str, str] = {}


def cursor_path(cursor_dir: Path, project_id: int) -> Path:
    return cursor_dir / f"project-{project_id}.json"


def read_cursor(cursor_dir: Path, project_id: int) -> Cursor:
    """The cursor, or an empty one on first start; a damaged cursor is an error, never silently reset."""
    path = cursor_path(cursor_dir, project_id)
    if not path.exists():
        return Cursor(project_id=project_id)
    cursor = Cursor.model_validate_json(path.read_text())
    if cursor.project_id != project_id:
        raise ValueError(f"{path} belongs to project {cursor.project_id}, not {project_id}")
    return cursor


def write_cursor(cursor_dir: Path, cursor: Cursor) -> None:
    """Replace the cursor file atomically: readers see the old or the new one, never half of one."""
    path = cursor_path(cursor_dir, cursor.project_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".json.partial")
    with open(partial, "w") as handle:
        handle.write(cursor.model_dump_json())
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


@dataclass
class Feed:
    """One project the bridge reads: its kind, id, category types (id -> text) and cursor."""

    kind: ProjectKind
    project_id: int
    label_texts: dict[int, str]
    cursor: Cursor


class LabelBridge:
    def __init__(
        self,
        *,
        client: DoccanoClient,
        producer: Producer,
        cursor_dir: Path,
        sentiment_project: str,
        expansion_project: str,
        comparison_project: str,
        proposer: str,
    ) -> None:
        """`proposer`: the doccano user the doccano sink writes its proposed expansions as."""
        self._client = client
        self._producer = producer
        self._cursor_dir = cursor_dir
        self._names = (sentiment_project, expansion_project, comparison_project)
        self._proposer = proposer
        self._feeds: list[Feed] = []
        self._usernames: dict[int, str] = {}

    @classmethod
    def from_settings(
        cls, settings: Settings, *, client: DoccanoClient, producer: Producer, cursor_dir: Path
    ) -> LabelBridge:
        return cls(
            client=client,
            producer=producer,
            cursor_dir=cursor_dir,
            sentiment_project=settings.doccano_project,
            expansion_project=settings.doccano_expansion_project,
            comparison_project=settings.doccano_comparison_project,
            proposer=settings.doccano_username,
        )

    def setup(self) -> None:
        """Log in, ensure the three projects (collaborative: everyone's labels are read) and read their cursors."""
        self._client.login()
        sentiment_name, expansion_name, comparison_name = self._names
        sentiment = ensure_sentiment_project(self._client, sentiment_name)
        expansion_id = ensure_expansion_project(self._client, expansion_name)
        comparison = ensure_comparison_project(self._client, comparison_name)
        self._feeds = [
            self._feed("sentiment", sentiment.id, sentiment.label_ids),
            self._feed("expansion", expansion_id, {}),
            self._feed("comparison", comparison.id, comparison.label_ids),
        ]
        log.info(
            "label_bridge.ready",
            projects={feed.kind: feed.project_id for feed in self._feeds},
            published={feed.kind: len(feed.cursor.annotations) for feed in self._feeds},
        )

    def _feed(self, kind: ProjectKind, project_id: int, label_ids: dict[str, int]) -> Feed:
        label_texts = {type_id: text for text, type_id in label_ids.items()}
        return Feed(kind, project_id, label_texts, read_cursor(self._cursor_dir, project_id))

    def poll_once(self) -> list[LabelRecorded]:
        """Publish what changed in each project since the last poll; returns the events published."""
        if not self._feeds:
            raise RuntimeError("setup() first")
        return [event for feed in self._feeds for event in self._poll(feed)]

    def _poll(self, feed: Feed) -> list[LabelRecorded]:
        current = self._read(feed)
        events = label_events(feed.cursor.annotations, current.labels)
        rejections = new_rejections(feed.cursor.rejected, current.rejected)
        fingerprints = {label_id: r.fingerprint for label_id, r in current.rejected.items()}
        if not events and not rejections and fingerprints == feed.cursor.rejected:
            return []
        for event in events:
            publish(self._producer, topics.LABELS, event)
        for label_id, rejection in rejections.items():
            send_dead_letter(
                self._producer,
                STAGE,
                source_topic=f"doccano:{feed.project_id}",
                value=rejection.original_json().encode(),
                reason=rejection.reason,
                error_type="AnnotationRejected",
                key=label_id.encode(),
            )
        flush_or_raise(self._producer)
        feed.cursor = Cursor(project_id=feed.project_id, annotations=current.labels, rejected=fingerprints)
        write_cursor(self._cursor_dir, feed.cursor)
        log.info(
            "label_bridge.published",
            project=feed.kind,
            project_id=feed.project_id,
            events=len(events),
            dead_letters=len(rejections),
            annotations=len(current.labels),
        )
        return events

    def _read(self, feed: Feed) -> ProjectSnapshot:
        if feed.kind == "expansion":
            return self._read_expansions(feed)
        return self._read_classifications(feed)

    def _read_classifications(self, feed: Feed) -> ProjectSnapshot:
        project_id = feed.project_id
        # Only labelled examples, plus those labelled before (to see their labels go);
        # an example the label filter misses now is read on the next poll.
        examples = {
            e["id"]: e for text in feed.label_texts.values() for e in self._client.iter_examples(project_id, label=text)
        }
        for example_id in {s.example_id for s in feed.cursor.annotations.values()} - examples.keys():
            example = self._client.get_example(project_id, example_id)
            if example is not None:
                examples[example_id] = example
        snapshot_of = sentiment_snapshot if feed.kind == "sentiment" else comparison_snapshot
        current = ProjectSnapshot()
        for example in examples.values():
            categories = self._client.categories(project_id, example["id"])
            usernames = self._names_of(c["user"] for c in categories)
            current.update(snapshot_of(project_id, example, categories, feed.label_texts, usernames))
        return current

    def _read_expansions(self, feed: Feed) -> ProjectSnapshot:
        # doccano's label filter does not cover text annotations: every example is read.
        project_id = feed.project_id
        current = ProjectSnapshot()
        for example in self._client.iter_examples(project_id):
            texts = self._client.text_labels(project_id, example["id"])
            if not texts:
                continue
            usernames = self._names_of(t["user"] for t in texts)
            current.update(
                expansion_snapshot(
                    project_id,
                    example,
                    texts,
                    proposer=self._proposer,
                    confirmed_by=self._confirmer(project_id, example) if example["is_confirmed"] else None,
                    usernames=usernames,
                )
            )
        return current

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


def main(settings: Settings, args: argparse.Namespace) -> int:
    stop = stop_on_signals()
    ensure_topics(settings, [topics.LABELS, topics.dead_letter_topic(STAGE)])
    client = DoccanoClient(
        settings.doccano_url, settings.doccano_username, secrets.load_or_create(settings.secrets_file).doccano_password
    )
    producer = make_producer(settings)
    bridge = LabelBridge.from_settings(
        settings, client=client, producer=producer, cursor_dir=settings.data_dir / "label_bridge"
    )
    ready = False
    delay = settings.doccano_poll_seconds
    try:
        while not stop.is_set():
            try:
                if not ready:
                    bridge.setup()
                    ready = True
                bridge.poll_once()
                delay = settings.doccano_poll_seconds
            except ServiceUnavailable as exc:
                log.warning("label_bridge.waiting", error=str(exc), retry_in_s=delay)
                delay = min(delay * 2, 60.0)
            except DoccanoError as exc:
                # A refused request (token revoked, project deleted and made again): log in and look it up anew.
                log.warning("label_bridge.refused", error=str(exc), retry_in_s=delay)
                ready = False
                delay = min(delay * 2, 60.0)
            stop.wait(delay)
    finally:
        producer.flush(10)
        client.close()
    return 0
