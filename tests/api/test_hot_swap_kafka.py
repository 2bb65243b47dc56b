"""The API's hot-swap on the real broker: each bad version (corrupt weights, a config that does not
load, weights that fail the warm-up) leaves the old version serving and is announced as a `ModelLoadFailed`."""

from __future__ import annotations

import uuid

import pytest
import torch
from announced import announced
from fastapi.testclient import TestClient
from safetensors.torch import load_file, save_file
from topic_reader import read_records

from api.main import create_app
from deploy.processes import wait_until
from models.manifest import read_manifest, write_manifest
from streams import bus, topics
from streams.records import ModelLoadFailed

pytestmark = pytest.mark.integration

TIMEOUT_S = 120.0  # bound on waiting for the broker and a load; no timing is asserted


def _serving(client: TestClient) -> str | None:
    return client.get("/health").json()["model_version"]


def _resigned(version):
    """The version's manifest written again over its changed files: checksums pass, the content is the test's."""
    return type(version)(version.version, version.path, write_manifest(version.path, read_manifest(version.path)))


def test_bad_versions_leave_the_old_one_serving_and_are_announced(settings, make_scored_version, tampered):
    run = uuid.uuid4().hex[:12]
    replica = f"test-{run}"
    # A policy name of its own: the demo's API never sees these versions.
    api_settings = settings.model_copy(
        update={"policy_name": f"test-policy-{run}", "api_replica_id": replica, "max_new_tokens_limit": 16}
    )
    name = api_settings.policy_for(api_settings.target_sentiment)
    good = make_scored_version(f"{run}-good", name=name)
    corrupt = tampered(f"{run}-corrupt")
    nan = make_scored_version(f"{run}-nan", name=name, seed=9)
    weights = nan.path / "policy" / "model.safetensors"
    save_file({k: torch.full_like(v, float("nan")) for k, v in load_file(weights).items()}, weights)
    nan = _resigned(nan)
    unloadable = make_scored_version(f"{run}-unloadable", name=name, seed=10)
    (unloadable.path / "policy" / "config.json").write_text('{"model_type": "gpt2", "n_layer": "two"')
    unloadable = _resigned(unloadable)

    bus.ensure_topics(settings, [topics.MODEL_UPDATES, topics.MODEL_LOAD_FAILURES, topics.dead_letter_topic("api")])
    producer = bus.make_producer(settings)

    def promote(version) -> None:
        record = announced(api_settings, version.path, model_name=name)
        bus.publish(producer, topics.MODEL_UPDATES, record)
        bus.flush_or_raise(producer)

    try:
        with TestClient(create_app(api_settings)) as client:
            promote(good)
            wait_until(lambda: _serving(client) == good.version, what=f"API serving {good.version}", timeout=TIMEOUT_S)
            failures = []
            # One at a time: announcements that arrive together supersede all but the last.
            for bad in (corrupt, unloadable, nan):
                promote(bad)
                failures += read_records(
                    settings,
                    topics.MODEL_LOAD_FAILURES,
                    until=lambda found: bool(found),
                    keep=lambda event, bad=bad: (
                        isinstance(event, ModelLoadFailed) and event.replica == replica and event.version == bad.version
                    ),
                    timeout=TIMEOUT_S,
                )
                assert _serving(client) == good.version
            answer = client.post("/v1/classify", json={"text": "A sunny day"})
            assert answer.status_code == 200 and answer.json()["model_version"] == good.version
    finally:
        # A tombstone retires the test's model name from the compacted topic.
        producer.produce(topics.MODEL_UPDATES.name, key=name.encode(), value=None)
        producer.flush(10)

    by_version = {event.version: event for event in failures}
    assert set(by_version) == {corrupt.version, unloadable.version, nan.version}
    assert by_version[corrupt.version].error_type == "ChecksumMismatch"
    assert by_version[unloadable.version].error_type not in ("ChecksumMismatch", "WarmUpFailed")
    assert by_version[nan.version].error_type == "WarmUpFailed"
    for event in failures:
        assert (event.model_name, event.serving_version) == (name, good.version)
        assert good.version in event.reason and event.version in event.reason
