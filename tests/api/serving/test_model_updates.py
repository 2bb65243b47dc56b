"""Applying model announcements without Kafka: swap, skip, keep serving on a bad version."""

from __future__ import annotations

import socket

import pytest
from announced import announced
from fastapi.testclient import TestClient

from api.main import create_app
from api.serving.model_updates import (
    Announcement,
    Unauthenticated,
    apply,
    consumer_group,
    latest_for,
    replica_id,
)
from api.serving.served_model import ModelHolder, ModelHolders
from models.announcements import model_update, sign, signing_key
from models.manifest import ChecksumMismatch, read_manifest
from models.store import OutsideStore
from streams import topics
from streams.records import ModelPromoted


def _promoted(settings, fixture, model_name: str = "expansion-policy") -> ModelPromoted:
    return announced(settings, fixture.path, model_name=model_name)


def _announcement(record: ModelPromoted, offset: int) -> Announcement:
    value = topics.MODEL_UPDATES.encode(record)
    return Announcement(record, 0, offset, topics.MODEL_UPDATES.key_of(record), value)


def test_apply_swaps_in_the_announced_version_then_skips_it(api_settings, v1, v2):
    holder = ModelHolder()
    first = apply(api_settings, holder, _promoted(api_settings, v1))
    assert (first.action, first.version, first.previous) == ("swapped", "v1", None)
    second = apply(api_settings, holder, _promoted(api_settings, v2))
    assert (second.action, second.previous) == ("swapped", "v1")
    served = holder.current
    again = apply(api_settings, holder, _promoted(api_settings, v2))
    assert again.action == "already_serving"
    assert holder.current is served


def test_checksum_mismatch_leaves_the_old_version_serving(api_settings, v1, tampered):
    holder = ModelHolder()
    apply(api_settings, holder, _promoted(api_settings, v1))
    outcome = apply(api_settings, holder, _promoted(api_settings, tampered("v-tampered-apply")))
    assert outcome.action == "failed"
    assert isinstance(outcome.error, ChecksumMismatch)
    assert outcome.previous == "v1"
    with TestClient(create_app(api_settings, holder=holder, follow_updates=False)) as client:
        answer = client.post("/generate", json={"prompt": "The cat", "max_new_tokens": 3})
    assert answer.status_code == 200
    assert answer.json()["model_version"] == "v1"


def test_a_version_missing_from_the_store_leaves_the_old_version_serving(api_settings, v1):
    holder = ModelHolder()
    apply(api_settings, holder, _promoted(api_settings, v1))
    record = _promoted(api_settings, v1)
    gone = sign(
        record.model_copy(update={"version": "v-gone", "uri": record.uri[: -len("v1")] + "v-gone"}),
        signing_key(api_settings),
    )
    outcome = apply(api_settings, holder, gone)
    assert outcome.action == "failed"
    assert "manifest.json is missing" in str(outcome.error)
    assert holder.current.version == "v1"


def test_an_announcement_of_a_directory_outside_the_store_is_refused(api_settings, v1, v2):
    """Seen: a hand-written announcement of a directory outside the registry was served. The record here is
    even signed with the right key: the place it names is still not this replica's store."""
    holder = ModelHolder()
    apply(api_settings, holder, _promoted(api_settings, v1))
    outside = model_update(v2.path.as_uri(), read_manifest(v2.path), v2.manifest_sha256, key=signing_key(api_settings))
    outcome = apply(api_settings, holder, outside)
    assert outcome.action == "failed" and isinstance(outcome.error, OutsideStore)
    assert holder.current.version == "v1"


@pytest.mark.parametrize("name, version", [("..", "v2"), ("expansion-policy", "../v2"), ("expansion-policy", ".v2")])
def test_names_that_leave_the_store_are_refused(api_settings, v2, name, version):
    record = _promoted(api_settings, v2)
    forged = sign(record.model_copy(update={"model_name": name, "version": version}), signing_key(api_settings))
    outcome = apply(api_settings, ModelHolder(), forged)
    assert outcome.action == "failed" and isinstance(outcome.error, OutsideStore)


def test_unsigned_altered_or_foreign_announcements_are_refused(api_settings, v1, v2):
    holder = ModelHolder()
    apply(api_settings, holder, _promoted(api_settings, v1))
    genuine = _promoted(api_settings, v2)
    refused = {
        "unsigned": genuine.model_copy(update={"signature": ""}),
        "altered": genuine.model_copy(update={"reason": "an edit after signing"}),
        "another key": sign(genuine, b"not the shared key"),
    }
    for why, record in refused.items():
        outcome = apply(api_settings, holder, record)
        assert outcome.action == "failed" and isinstance(outcome.error, Unauthenticated), why
        assert holder.current.version == "v1", why
    assert apply(api_settings, holder, genuine).action == "swapped"


def test_a_file_the_manifest_does_not_list_is_refused(api_settings, v1, make_version):
    holder = ModelHolder()
    apply(api_settings, holder, _promoted(api_settings, v1))
    record = _promoted(api_settings, make_version("v-extra", parent="v1", seed=5))
    placed = api_settings.registry_dir / record.model_name / record.version
    (placed / "policy" / "extra.safetensors").write_bytes(b"not in the manifest")
    outcome = apply(api_settings, holder, record)
    assert outcome.action == "failed" and isinstance(outcome.error, ChecksumMismatch)
    assert "does not list" in str(outcome.error) and "extra.safetensors" in str(outcome.error)
    assert holder.current.version == "v1"


def test_latest_for_keeps_the_last_announcement_of_the_served_name(api_settings, v1, v2):
    batch = [
        _announcement(_promoted(api_settings, v1), 0),
        _announcement(_promoted(api_settings, v2, model_name="another-model"), 1),
        _announcement(_promoted(api_settings, v2), 2),
    ]
    latest, superseded = latest_for(batch, "expansion-policy")
    assert latest.offset == 2
    assert superseded == ["v1"]
    assert latest_for(batch, "unknown") == (None, [])


def test_each_replica_has_its_own_group(api_settings):
    assert replica_id(api_settings) == f"{socket.gethostname()}-{api_settings.api_port}"
    named = api_settings.model_copy(update={"api_replica_id": "replica-a"})
    assert consumer_group(named) == "ctrlgpt-api-replica-a"


def test_a_holder_per_target_under_its_policy_name(api_settings):
    settings = api_settings.model_copy(update={"targets": "positive, negative"})
    models = ModelHolders.for_settings(settings)
    assert models.targets == ["positive", "negative"]
    assert models.model_name("negative") == "expansion-policy-negative"
    by_name = models.by_model_name()
    assert by_name["expansion-policy-positive"] is models.holder("positive")
    assert by_name["expansion-policy-negative"] is not models.holder("positive")


def test_the_default_target_must_be_one_of_the_targets(api_settings):
    settings = api_settings.model_copy(update={"targets": "negative", "target_sentiment": "positive"})
    with pytest.raises(ValueError, match="target_sentiment 'positive' must be one of targets"):
        ModelHolders.for_settings(settings)


def test_latest_for_picks_each_target_policy_from_one_batch(api_settings, v1, v2):
    settings = api_settings.model_copy(update={"targets": "positive,negative"})
    names = ModelHolders.for_settings(settings).by_model_name()
    batch = [
        _announcement(_promoted(api_settings, v1, model_name="expansion-policy-negative"), 0),
        _announcement(_promoted(api_settings, v2, model_name="expansion-policy-positive"), 1),
        _announcement(_promoted(api_settings, v1, model_name="expansion-policy-positive"), 2),
    ]
    latest = {name: latest_for(batch, name)[0].record.version for name in names}
    assert latest == {"expansion-policy-positive": "v1", "expansion-policy-negative": "v1"}
    assert latest_for(batch, "expansion-policy-positive")[1] == ["v2"]
