"""Records outlive builds: each record's schema is kept per version, and older versions are upgraded when read."""

from __future__ import annotations

import json
from typing import ClassVar

import pytest
from record_schemas import DIRECTORY, incompatibilities, record_classes, schema_of, snapshot_path

from streams import topics
from streams.records import LabelRecorded, Record
from streams.topics import ContractError, Topic


@pytest.mark.parametrize("record", record_classes(), ids=lambda c: c.__name__)
def test_each_record_matches_the_snapshot_of_its_version(record):
    path = snapshot_path(record, record.SCHEMA_VERSION)
    assert path.exists(), (
        f"no schema snapshot of {record.__name__} v{record.SCHEMA_VERSION}: run tests/record_schemas.py"
    )
    kept, now = json.loads(path.read_text()), schema_of(record)
    problems = incompatibilities(kept, now)
    assert not problems, (
        f"{record.__name__} changed incompatibly within schema_version {record.SCHEMA_VERSION}: {problems}. "
        "Raise its SCHEMA_VERSION, add UPGRADES[old version], then run tests/record_schemas.py"
    )
    assert kept == now, f"{record.__name__} changed compatibly: run tests/record_schemas.py to keep its new schema"


def test_every_kept_older_version_has_an_upgrade_path():
    classes = {c.__name__: c for c in record_classes()}
    for path in sorted(DIRECTORY.glob("*.json")):
        name, version = path.stem.rsplit(".v", 1)
        record = classes[name]
        for step in range(int(version), record.SCHEMA_VERSION):
            assert step in record.UPGRADES or (name, step) == ("ModelPromoted", 1), f"{name} v{step} has no upgrade"


class Rated(Record):
    """A record at its third version: v1 had `score` out of 10, v2 a `stars` out of 5, v3 adds `comment`."""

    SCHEMA_VERSION: ClassVar[int] = 3
    UPGRADES: ClassVar = {
        1: lambda old: {**{k: v for k, v in old.items() if k != "score"}, "stars": old["score"] / 2},
        2: lambda old: {**old, "comment": ""},
    }

    schema_version: int = 3
    stars: float
    comment: str


RATED = Topic("ctrlgpt.test.rated", Rated, key="event_id")


def test_an_older_record_is_upgraded_step_by_step_when_read():
    v1 = RATED.decode(b'{"schema_version": 1, "event_id": "e1", "score": 8}')
    v2 = RATED.decode(b'{"schema_version": 2, "event_id": "e2", "stars": 3}')
    assert (v1.schema_version, v1.stars, v1.comment, v1.event_id) == (3, 4.0, "", "e1")
    assert (v2.schema_version, v2.stars, v2.comment) == (3, 3.0, "")
    assert RATED.decode(RATED.encode(v1)) == v1


def test_a_newer_or_unupgradable_version_is_refused_with_the_reason():
    with pytest.raises(ContractError, match="schema_version 4 is not supported"):
        RATED.decode(b'{"schema_version": 4, "stars": 3, "comment": ""}')
    with pytest.raises(ContractError, match="schema_version 0 cannot be upgraded to 3"):
        RATED.decode(b'{"schema_version": 0, "stars": 3, "comment": ""}')
    with pytest.raises(ContractError, match="ModelPromoted schema_version 1 cannot be upgraded"):
        topics.MODEL_UPDATES.decode(b'{"schema_version": 1, "version": "v1", "path": "/x"}')


def test_a_stored_label_of_this_build_reads_back_unchanged():
    label = LabelRecorded.model_validate(
        {
            "label_id": "doccano:1:2:3",
            "source": "doccano",
            "annotator": "ann",
            "label": {"kind": "sentiment", "text": "t", "sentiment": "positive"},
        }
    )
    assert topics.LABELS.decode(topics.LABELS.encode(label)) == label
