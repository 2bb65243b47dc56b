"""The JSON schema of every topic's record, kept per version in tests/streams/record_schema_snapshots/.

    .venv/bin/python tests/record_schemas.py    # write the current versions' snapshots

Run it after a compatible change (a new optional field); after an incompatible one, first raise
the record's SCHEMA_VERSION and add its upgrade from the version before (streams/records.py).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streams import records  # after the path: runs as a script from anywhere

DIRECTORY = Path(__file__).parent / "streams" / "record_schema_snapshots"
# Words for people: changing them changes no reader.
NOT_COMPARED = ("description", "title", "examples")


def record_classes() -> list[type[records.Record]]:
    exported = (getattr(records, name) for name in records.__all__)
    return [c for c in exported if isinstance(c, type) and issubclass(c, records.Record) and c is not records.Record]


def structural(schema: Any) -> Any:
    """The schema without the words for people (keywords only: a field may be named `title`)."""
    if isinstance(schema, list):
        return [structural(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    kept = {}
    for key, value in schema.items():
        if key in ("properties", "$defs"):
            kept[key] = {name: structural(sub) for name, sub in value.items()}
        elif key not in NOT_COMPARED:
            kept[key] = structural(value)
    return kept


def schema_of(record: type[records.Record]) -> dict:
    return structural(record.model_json_schema())


def snapshot_path(record: type[records.Record], version: int) -> Path:
    return DIRECTORY / f"{record.__name__}.v{version}.json"


def incompatibilities(old: dict, new: dict) -> list[str]:
    """What a record written with `old` would fail in `new`: a field removed or retyped, a new required field."""
    problems = []
    old_fields, new_fields = old.get("properties", {}), new.get("properties", {})
    for name, field in old_fields.items():
        if name not in new_fields:
            problems.append(f"field {name} removed (old records carry it; extra fields are forbidden)")
        elif {k: v for k, v in field.items() if k != "default"} != {
            k: v for k, v in new_fields[name].items() if k != "default"
        }:
            problems.append(f"field {name} changed: {field} -> {new_fields[name]}")
    for name in set(new.get("required", [])) - set(old_fields):
        problems.append(f"new required field {name} (old records lack it)")
    if old.get("$defs") != new.get("$defs"):
        problems.append("a nested type changed ($defs)")
    return problems


def main() -> None:
    DIRECTORY.mkdir(exist_ok=True)
    for record in record_classes():
        path = snapshot_path(record, record.SCHEMA_VERSION)
        path.write_text(json.dumps(schema_of(record), indent=2, sort_keys=True) + "\n")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
