"""Label bridge: doccano annotations -> `LabelRecorded` events on `topics.LABELS`.

doccano has no webhooks, so the bridge polls. Each poll reads every category
annotation of the sentiment project, compares them with the cursor (the
annotations already published) and publishes what changed: `created`, `updated`
(label or text changed) or `deleted`. The cursor file is replaced atomically only
after Kafka acknowledged the events, so a crash repeats at most the last poll's
events (consumers dedupe on `label_id`), and a restart publishes everything that
changed while the bridge was down.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import structlog
from confluent_kafka import Producer
from pydantic import BaseModel, ConfigDict

from consumers.doccano_client import DoccanoClient, DoccanoError, ensure_sentiment_project
from ctrlgpt import secrets
from ctrlgpt.lifecycle import stop_on_signals
from ctrlgpt.settings import Settings
from streams import topics
from streams.bus import ServiceUnavailable, ensure_topics, flush_or_raise, make_producer, publish
from streams.records import LabelRecorded, SentimentLabel

__all__ = [
    "AnnotationSnapshot",
    "Cursor",
    "LabelBridge",
    "annotation_label_id",
    "snapshot_example",
    "label_events",
    "read_cursor",
    "write_cursor",
    "main",
]

log = structlog.get_logger()


class AnnotationSnapshot(BaseModel):
    """What a published annotation said: enough to publish its deletion later, even of a deleted example."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    example_id: int
    annotator: str
    text: str
    sentiment: str
    page_url: str | None = None


class Cursor(BaseModel):
    model_config = ConfigDict(extra="forbid")
    project_id: int
    annotations: dict[str, AnnotationSnapshot] = {}


def annotation_label_id(project_id: int, example_id: int, annotation_id: int) -> str:
    return f"doccano:{project_id}:{example_id}:{annotation_id}"


def snapshot_example(
    project_id: int,
    example: Mapping[str, Any],
    categories: Iterable[Mapping[str, Any]],
    label_texts: Mapping[int, str],
    usernames: Mapping[int, str],
) -> dict[str, AnnotationSnapshot]:
    """One example's category annotations, keyed by label_id."""
    return {
        annotation_label_id(project_id, example["id"], category["id"]): AnnotationSnapshot(
            example_id=example["id"],
            annotator=usernames.get(category["user"], f"user-{category['user']}"),
            text=example["text"],
            sentiment=label_texts[category["label"]],
            page_url=(example.get("meta") or {}).get("url"),
        )
        for category in categories
    }


def label_events(
    previous: Mapping[str, AnnotationSnapshot], current: Mapping[str, AnnotationSnapshot]
) -> list[LabelRecorded]:
    """The events that turn `previous` into `current`, in label_id order."""
    events = []
    for label_id in sorted(previous.keys() | current.keys()):
        before, now = previous.get(label_id), current.get(label_id)
        if before is None:
            events.append(_event(label_id, now, "created"))
        elif now is None:
            events.append(_event(label_id, before, "deleted"))
        elif now != before:
            events.append(_event(label_id, now, "updated"))
    return events


def _event(label_id: str, snapshot: AnnotationSnapshot, action: str) -> LabelRecorded:
    return LabelRecorded(
        label_id=label_id,
        source="doccano",
        annotator=snapshot.annotator,
        action=action,
        label=SentimentLabel(text=snapshot.text, sentiment=snapshot.sentiment),
        page_url=snapshot.page_url,
    )


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


class LabelBridge:
    def __init__(self, *, client: DoccanoClient, producer: Producer, project_name: str, cursor_dir: Path) -> None:
        self._client = client
        self._producer = producer
        self._project_name = project_name
        self._cursor_dir = cursor_dir
        self._cursor: Cursor | None = None
        self._usernames: dict[int, str] = {}

    def setup(self) -> None:
        self._client.login()
        project = ensure_sentiment_project(self._client, self._project_name)
        self._cursor = read_cursor(self._cursor_dir, project.id)
        log.info("label_bridge.ready", project_id=project.id, published=len(self._cursor.annotations))

    def poll_once(self) -> list[LabelRecorded]:
        """Publish what changed since the last poll; returns the events published."""
        if self._cursor is None:
            raise RuntimeError("setup() first")
        current = self._current_annotations(self._cursor)
        events = label_events(self._cursor.annotations, current)
        if not events:
            return []
        for event in events:
            publish(self._producer, topics.LABELS, event)
        flush_or_raise(self._producer)
        cursor = Cursor(project_id=self._cursor.project_id, annotations=current)
        write_cursor(self._cursor_dir, cursor)
        self._cursor = cursor
        log.info("label_bridge.published", events=len(events), annotations=len(current))
        return events

    def _current_annotations(self, cursor: Cursor) -> dict[str, AnnotationSnapshot]:
        project_id = cursor.project_id
        label_texts = {type_id: text for text, type_id in self._client.category_types(project_id).items()}
        # Only labelled examples, plus those labelled before (to see their labels go);
        # an example the label filter misses now is read on the next poll.
        examples = {
            e["id"]: e for text in label_texts.values() for e in self._client.iter_examples(project_id, label=text)
        }
        for example_id in {s.example_id for s in cursor.annotations.values()} - examples.keys():
            example = self._client.get_example(project_id, example_id)
            if example is not None:
                examples[example_id] = example
        current: dict[str, AnnotationSnapshot] = {}
        for example in examples.values():
            categories = self._client.categories(project_id, example["id"])
            if any(c["user"] not in self._usernames for c in categories):
                self._usernames = self._client.usernames()
            current.update(snapshot_example(project_id, example, categories, label_texts, self._usernames))
        return current


def main(settings: Settings, args: argparse.Namespace) -> int:
    stop = stop_on_signals()
    ensure_topics(settings, [topics.LABELS])
    client = DoccanoClient(
        settings.doccano_url, settings.doccano_username, secrets.load_or_create(settings.secrets_file).doccano_password
    )
    producer = make_producer(settings)
    bridge = LabelBridge(
        client=client,
        producer=producer,
        project_name=settings.doccano_project,
        cursor_dir=settings.data_dir / "label_bridge",
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
