"""The trainer announces each target's current version again when the model-updates topic does not
(records from before signed schema-2 updates, a forged or lost announcement), and only then."""

from __future__ import annotations

import json
import uuid

import pytest
from registry_versions import add_version
from topic_reader import read_records

from models import operations
from models.announcements import is_authentic, signing_key
from streams import bus
from streams.records import ModelPromoted
from streams.topics import Topic

pytestmark = pytest.mark.integration


def test_current_versions_are_announced_again_when_the_topic_does_not_name_them(settings, tmp_path):
    run = uuid.uuid4().hex[:12]
    topic = Topic(
        f"ctrlgpt.test.model-updates.{run}", ModelPromoted, key="model_name", partitions=1, cleanup_policy="compact"
    )
    local = settings.model_copy(
        update={
            "data_dir": tmp_path,
            "model_store": "",
            "policy_name": f"test-reannounce-{run}",
            "targets": "positive,negative",
        }
    )
    positive, negative = (operations.registry_for(local, target) for target in ("positive", "negative"))
    first = add_version(positive, 1, name=positive.root.name)
    positive.promote(first, "passed the gate")
    pinned = add_version(negative, 1, name=negative.root.name)
    negative.pin(pinned, "the operator's choice")
    bus.ensure_topics(settings, [topic])
    producer = bus.make_producer(settings)
    # What a data directory from before schema 2 holds for the positive policy: a record no replica serves.
    old = {"schema_version": 1, "model_name": positive.root.name, "version": first, "path": "/var/x", "metrics": {}}
    producer.produce(topic.name, key=positive.root.name.encode(), value=json.dumps(old).encode())
    producer.flush(30)

    updates = operations.reannounce_current(local, producer=producer, topic=topic)

    assert sorted((u.model_name, u.version, u.action) for u in updates) == sorted(
        [(positive.root.name, first, "promoted"), (negative.root.name, pinned, "pinned")]
    )
    records = read_records(settings, topic, until=lambda found: len(found) >= 2)
    assert {(r.model_name, r.version) for r in records} == {
        (positive.root.name, first),
        (negative.root.name, pinned),
    }
    assert all(is_authentic(r, signing_key(local)) and r.uri.startswith("file://") for r in records)
    # A second start finds both named: nothing more is published.
    assert operations.reannounce_current(local, producer=producer, topic=topic) == []
