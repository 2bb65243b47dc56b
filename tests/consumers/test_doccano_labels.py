from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from consumers.doccano_labels import (
    AnnotationSnapshot,
    Cursor,
    annotation_label_id,
    label_events,
    read_cursor,
    snapshot_example,
    write_cursor,
)

EXAMPLE = {"id": 7, "text": "A lovely day in the park.", "meta": {"url": "http://site.test/a.html", "passage_key": "k"}}
LABELS = {11: "positive", 12: "negative"}
USERS = {1: "admin", 2: "alice"}


def snap(
    example_id: int = 7, sentiment: str = "positive", annotator: str = "alice", text: str = "A lovely day."
) -> AnnotationSnapshot:
    return AnnotationSnapshot(
        example_id=example_id, annotator=annotator, text=text, sentiment=sentiment, page_url="http://site.test/a.html"
    )


def test_snapshot_names_label_user_and_page() -> None:
    categories = [{"id": 40, "user": 2, "label": 11}, {"id": 41, "user": 9, "label": 12}]
    snapshots = snapshot_example(3, EXAMPLE, categories, LABELS, USERS)
    assert snapshots == {
        "doccano:3:7:40": AnnotationSnapshot(
            example_id=7,
            annotator="alice",
            text=EXAMPLE["text"],
            sentiment="positive",
            page_url="http://site.test/a.html",
        ),
        "doccano:3:7:41": AnnotationSnapshot(
            example_id=7,
            annotator="user-9",
            text=EXAMPLE["text"],
            sentiment="negative",
            page_url="http://site.test/a.html",
        ),
    }


def test_snapshot_of_an_example_without_url_has_no_page_url() -> None:
    (only,) = snapshot_example(
        3, {"id": 1, "text": "t", "meta": {}}, [{"id": 2, "user": 1, "label": 12}], LABELS, USERS
    ).values()
    assert only.page_url is None


def test_new_annotations_are_created_events() -> None:
    (event,) = label_events({}, {annotation_label_id(3, 7, 40): snap()})
    assert (event.label_id, event.action, event.source, event.annotator) == (
        "doccano:3:7:40",
        "created",
        "doccano",
        "alice",
    )
    assert (event.label.kind, event.label.text, event.label.sentiment) == ("sentiment", "A lovely day.", "positive")
    assert event.page_url == "http://site.test/a.html"


def test_unchanged_annotations_give_no_events() -> None:
    state = {"doccano:3:7:40": snap(), "doccano:3:8:41": snap(example_id=8)}
    assert label_events(state, dict(state)) == []


def test_vanished_annotations_are_deleted_events_with_what_they_said() -> None:
    (event,) = label_events({"doccano:3:7:40": snap(sentiment="negative")}, {})
    assert (event.action, event.label_id, event.label.sentiment, event.label.text) == (
        "deleted",
        "doccano:3:7:40",
        "negative",
        "A lovely day.",
    )


def test_a_changed_label_or_text_is_an_updated_event() -> None:
    before = {"doccano:3:7:40": snap(), "doccano:3:7:41": snap()}
    after = {"doccano:3:7:40": snap(sentiment="negative"), "doccano:3:7:41": snap(text="Edited.")}
    events = label_events(before, after)
    assert [(e.label_id, e.action) for e in events] == [("doccano:3:7:40", "updated"), ("doccano:3:7:41", "updated")]
    assert events[0].label.sentiment == "negative" and events[1].label.text == "Edited."


def test_relabelling_in_a_single_class_project_deletes_one_and_creates_another() -> None:
    events = label_events({"doccano:3:7:40": snap()}, {"doccano:3:7:41": snap(sentiment="negative")})
    assert [(e.label_id, e.action, e.label.sentiment) for e in events] == [
        ("doccano:3:7:40", "deleted", "positive"),
        ("doccano:3:7:41", "created", "negative"),
    ]


def test_cursor_round_trips_and_starts_empty(tmp_path: Path) -> None:
    assert read_cursor(tmp_path, 3) == Cursor(project_id=3)
    cursor = Cursor(project_id=3, annotations={"doccano:3:7:40": snap()})
    write_cursor(tmp_path / "bridge", cursor)
    assert read_cursor(tmp_path / "bridge", 3) == cursor
    assert [p.name for p in (tmp_path / "bridge").iterdir()] == ["project-3.json"]


def test_cursor_replaced_whole(tmp_path: Path) -> None:
    write_cursor(tmp_path, Cursor(project_id=3, annotations={"doccano:3:7:40": snap(), "doccano:3:7:41": snap()}))
    write_cursor(tmp_path, Cursor(project_id=3))
    assert read_cursor(tmp_path, 3).annotations == {}


def test_a_damaged_cursor_is_an_error_not_a_reset(tmp_path: Path) -> None:
    (tmp_path / "project-3.json").write_text('{"project_id": 3, "annotations": {')
    with pytest.raises(ValidationError):
        read_cursor(tmp_path, 3)
    (tmp_path / "project-3.json").write_text(json.dumps({"project_id": 4, "annotations": {}}))
    with pytest.raises(ValueError, match="project 4"):
        read_cursor(tmp_path, 3)
