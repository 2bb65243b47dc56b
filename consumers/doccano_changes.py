"""Debezium's change records of doccano's tables, read as "this example changed" (pure: no I/O).

The label bridge does not rebuild labels from the rows themselves: a row names the
example it touches, and the bridge reads that example's annotations as they are now.
So a record only needs to say which example, and, for examples, which project; what
the row held beyond that does not matter. The envelope is Debezium's JSON without
schemas (deploy.connect): `{"before": row|null, "after": row|null, "op": "c|u|d|r", ...}`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

__all__ = ["ExampleChange", "MalformedChange", "example_change"]

EXAMPLES_TABLE = "examples_example"
CATEGORIES_TABLE = "labels_category"


class MalformedChange(ValueError):
    """A record on a change topic that does not say which example changed."""


@dataclass(frozen=True)
class ExampleChange:
    """An example whose annotations (or the example itself) changed.

    `project_id` is known for changes of the example row itself; `created` marks a new
    example (or one read by Debezium's first snapshot): the row alone changes no label,
    it tells the bridge the example's project; its annotations' own rows follow.
    `category_type_id`: a category annotation's type (each project has its own types, so
    it tells the project too); `text_annotation`: a row of the text (seq2seq) tables.
    """

    example_id: int
    project_id: int | None = None
    created: bool = False
    category_type_id: int | None = None
    text_annotation: bool = False


def _table_of(topic: str) -> str:
    return topic.rsplit(".", 1)[-1]


def _positive_int(row: dict[str, Any], column: str) -> int:
    value = row.get(column)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise MalformedChange(f"column {column!r} is not an id: {value!r}")
    return value


def example_change(topic: str, value: bytes | None) -> ExampleChange | None:
    """What a change record says; None for a tombstone (Kafka compaction's, not a change)."""
    if value is None:
        return None
    try:
        envelope = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedChange(f"not JSON: {exc}") from exc
    if not isinstance(envelope, dict):
        raise MalformedChange(f"not a Debezium envelope: a JSON {type(envelope).__name__}")
    op = envelope.get("op")
    if op not in ("c", "u", "d", "r"):
        raise MalformedChange(f"unknown op {op!r}")
    row = envelope.get("before") if op == "d" else envelope.get("after")
    if not isinstance(row, dict):
        raise MalformedChange(f"op {op!r} without its row")
    table = _table_of(topic)
    if table == EXAMPLES_TABLE:
        return ExampleChange(_positive_int(row, "id"), _positive_int(row, "project_id"), created=op in ("c", "r"))
    if table == CATEGORIES_TABLE:
        return ExampleChange(_positive_int(row, "example_id"), category_type_id=_positive_int(row, "label_id"))
    # A text annotation or an example's check mark: both matter in the expansion project only.
    return ExampleChange(_positive_int(row, "example_id"), text_annotation=True)
