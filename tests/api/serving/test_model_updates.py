"""Applying model announcements without Kafka: swap, skip, keep serving on a bad version."""

from __future__ import annotations

import socket

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.serving.model_updates import (
    Announcement,
    apply,
    consumer_group,
    latest_for,
    replica_id,
    version_dir,
)
from api.serving.served_model import ModelHolder, ModelHolders
from models.manifest import ChecksumMismatch
from streams import topics
from streams.records import ModelPromoted


def _promoted(fixture, model_name: str = "expansion-policy") -> ModelPromoted:
    return ModelPromoted(
        model_name=model_name, version=fixture.version, path=str(fixture.path), manifest_sha256=fixture.manifest_sha256
    )


def _announcement(record: ModelPromoted, offset: int) -> Announcement:
    value = topics.MODEL_UPDATES.encode(record)
    return Announcement(record, 0, offset, topics.MODEL_UPDATES.key_of(record), value)


def test_apply_swaps_in_the_announced_version_then_skips_it(api_settings, v1, v2):
    holder = ModelHolder()
    first = apply(api_settings, holder, _promoted(v1))
    assert (first.action, first.version, first.previous) == ("swapped", "v1", None)
    second = apply(api_settings, holder, _promoted(v2))
    assert (second.action, second.previous) == ("swapped", "v1")
    served = holder.current
    again = apply(api_settings, holder, _promoted(v2))
    assert again.action == "already_serving"
    assert holder.current is served


def test_checksum_mismatch_leaves_the_old_version_serving(api_settings, v1, tampered):
    holder = ModelHolder()
    apply(api_settings, holder, _promoted(v1))
    outcome = apply(api_settings, holder, _promoted(tampered("v-tampered-apply")))
    assert outcome.action == "failed"
    assert isinstance(outcome.error, ChecksumMismatch)
    assert outcome.previous == "v1"
    with TestClient(create_app(api_settings, holder=holder, follow_updates=False)) as client:
        answer = client.post("/generate", json={"prompt": "The cat", "max_new_tokens": 3})
    assert answer.status_code == 200
    assert answer.json()["model_version"] == "v1"


def test_a_missing_directory_leaves_the_old_version_serving(api_settings, v1):
    holder = ModelHolder()
    apply(api_settings, holder, _promoted(v1))
    gone = ModelPromoted(version="v-gone", path="does/not/exist", manifest_sha256="0" * 64)
    outcome = apply(api_settings, holder, gone)
    assert outcome.action == "failed"
    assert "manifest.json is missing" in str(outcome.error)
    assert holder.current.version == "v1"


def test_latest_for_keeps_the_last_announcement_of_the_served_name(v1, v2):
    batch = [
        _announcement(_promoted(v1), 0),
        _announcement(_promoted(v2, model_name="another-model"), 1),
        _announcement(_promoted(v2), 2),
    ]
    latest, superseded = latest_for(batch, "expansion-policy")
    assert latest.offset == 2
    assert superseded == ["v1"]
    assert latest_for(batch, "unknown") == (None, [])


def test_relative_paths_are_under_the_registry(api_settings, tmp_path):
    assert version_dir(api_settings, "v3") == api_settings.registry_dir / "v3"
    assert version_dir(api_settings, str(tmp_path)) == tmp_path


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
        _announcement(_promoted(v1, model_name="expansion-policy-negative"), 0),
        _announcement(_promoted(v2, model_name="expansion-policy-positive"), 1),
        _announcement(_promoted(v1, model_name="expansion-policy-positive"), 2),
    ]
    latest = {name: latest_for(batch, name)[0].record.version for name in names}
    assert latest == {"expansion-policy-positive": "v1", "expansion-policy-negative": "v1"}
    assert latest_for(batch, "expansion-policy-positive")[1] == ["v2"]
