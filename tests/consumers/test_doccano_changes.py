"""Debezium's change records read as "this example changed" (consumers.doccano_changes)."""

from __future__ import annotations

import json

import pytest

from consumers.doccano_changes import ExampleChange, MalformedChange, example_change

CATEGORIES = "ctrlgpt.cdc.doccano.public.labels_category"
EXAMPLES = "ctrlgpt.cdc.doccano.public.examples_example"
TEXTS = "ctrlgpt.cdc.doccano.public.labels_textlabel"


def envelope(op: str, before: dict | None, after: dict | None) -> bytes:
    return json.dumps({"before": before, "after": after, "op": op, "source": {"table": "x"}}).encode()


def test_an_annotation_created_or_deleted_names_its_example() -> None:
    row = {"id": 40, "example_id": 7, "label_id": 1, "user_id": 2}
    assert example_change(CATEGORIES, envelope("c", None, row)) == ExampleChange(7, category_type_id=1)
    # A deletion carries the whole row in `before` (REPLICA IDENTITY FULL).
    assert example_change(CATEGORIES, envelope("d", row, None)) == ExampleChange(7, category_type_id=1)
    assert example_change(CATEGORIES, envelope("r", None, row)) == ExampleChange(7, category_type_id=1)
    text = {"id": 41, "example_id": 8, "text": "t", "user_id": 2}
    assert example_change(TEXTS, envelope("u", text, text)) == ExampleChange(8, text_annotation=True)


def test_an_example_row_names_its_project_and_a_new_one_changes_no_label() -> None:
    row = {"id": 7, "project_id": 3, "text": "t", "meta": "{}"}
    assert example_change(EXAMPLES, envelope("c", None, row)) == ExampleChange(7, 3, created=True)
    assert example_change(EXAMPLES, envelope("u", row, row)) == ExampleChange(7, 3)
    assert example_change(EXAMPLES, envelope("d", row, None)) == ExampleChange(7, 3)


def test_a_tombstone_is_no_change() -> None:
    assert example_change(CATEGORIES, None) is None


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"\xff\xfe not json", "not JSON"),
        (b"[1, 2]", "not a Debezium envelope"),
        (json.dumps({"op": "x", "after": {}}).encode(), "unknown op"),
        (json.dumps({"op": "d", "before": None, "after": {"example_id": 7}}).encode(), "without its row"),
        (json.dumps({"op": "c", "after": {"example_id": "7", "label_id": 1}}).encode(), "not an id"),
        (json.dumps({"op": "c", "after": {"example_id": True, "label_id": 1}}).encode(), "not an id"),
        (json.dumps({"op": "c", "after": {"example_id": 7}}).encode(), "'label_id' is not an id"),
    ],
)
def test_a_record_that_names_no_example_is_malformed(value: bytes, reason: str) -> None:
    with pytest.raises(MalformedChange, match=reason):
        example_change(CATEGORIES, value)
