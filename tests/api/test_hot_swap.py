"""Hot-swap hardening on real files: a version that fails its checksums, its load or its warm-up never
replaces the one serving; a replaced version lives until its last in-flight request lets go of it."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch
from announced import announced
from safetensors.torch import load_file, save_file

from api.serving.model_loader import WarmUpFailed
from api.serving.model_updates import apply, load_failure
from api.serving.served_model import ModelHolder
from models.manifest import ChecksumMismatch, read_manifest, write_manifest
from streams.records import ModelPromoted


def _promoted(settings, version) -> ModelPromoted:
    return announced(settings, version.path)


def _resigned(version):
    """The version's manifest written again over its changed files: checksums pass, the content is the test's."""
    return type(version)(version.version, version.path, write_manifest(version.path, read_manifest(version.path)))


@pytest.fixture
def serving(v1):
    holder = ModelHolder()
    holder.swap(v1.load())
    return holder


def test_a_corrupt_weight_file_is_refused_and_the_old_version_keeps_serving(api_settings, serving, tampered):
    outcome = apply(api_settings, serving, _promoted(api_settings, tampered("v-corrupt")))
    assert (outcome.action, outcome.previous) == ("failed", "v1")
    assert isinstance(outcome.error, ChecksumMismatch)
    assert "model.safetensors" in str(outcome.error)
    assert serving.current.version == "v1"


def test_weights_that_load_but_cannot_generate_fail_the_warm_up(api_settings, serving, make_version):
    version = make_version("v-nan", seed=5)
    weights = version.path / "policy" / "model.safetensors"
    tensors = load_file(weights)
    save_file({name: torch.full_like(tensor, float("nan")) for name, tensor in tensors.items()}, weights)
    outcome = apply(api_settings, serving, _promoted(api_settings, _resigned(version)))
    assert outcome.action == "failed"
    assert isinstance(outcome.error, WarmUpFailed)
    assert "v-nan failed its warm-up" in str(outcome.error)
    assert serving.current.version == "v1"


def test_a_reward_model_that_scores_nan_fails_the_warm_up(api_settings, serving, make_scored_version):
    version = make_scored_version("v-nan-reward", seed=6)
    weights = version.path / "reward" / "model.safetensors"
    tensors = load_file(weights)
    save_file({name: torch.full_like(tensor, float("nan")) for name, tensor in tensors.items()}, weights)
    outcome = apply(api_settings, serving, _promoted(api_settings, _resigned(version)))
    assert outcome.action == "failed"
    assert isinstance(outcome.error, WarmUpFailed)
    assert "reward model scored" in str(outcome.error)
    assert serving.current.version == "v1"


def test_a_config_that_does_not_load_is_refused(api_settings, serving, make_version):
    version = make_version("v-broken-config", seed=7)
    (version.path / "policy" / "config.json").write_text('{"model_type": "gpt2", "n_layer": "two"')
    outcome = apply(api_settings, serving, _promoted(api_settings, _resigned(version)))
    assert outcome.action == "failed"
    assert serving.current.version == "v1"


def test_a_good_version_swaps_in_with_its_reward_model(api_settings, serving, make_scored_version):
    outcome = apply(api_settings, serving, _promoted(api_settings, make_scored_version("v-good", seed=8)))
    assert (outcome.action, outcome.previous) == ("swapped", "v1")
    assert serving.current.version == "v-good"
    assert serving.current.scorer is not None


def test_the_old_version_is_freed_only_after_the_in_flight_request_lets_go(api_settings, v1, v2):
    holder = ModelHolder()
    holder.swap(v1.load())
    in_flight = holder.current  # what a request took at its start
    old = weakref.ref(in_flight)
    holder.swap(v2.load())
    gc.collect()
    assert old() is not None and in_flight.version == "v1"  # still usable by the request holding it
    del in_flight
    gc.collect()
    assert old() is None


def test_a_failure_event_names_the_replica_the_version_and_what_keeps_serving(api_settings, serving, tampered):
    record = _promoted(api_settings, tampered("v-corrupt-event"))
    outcome = apply(api_settings, serving, record)
    event = load_failure(api_settings, record, outcome, reason="checksum")
    assert (event.version, event.model_name, event.serving_version) == ("v-corrupt-event", record.model_name, "v1")
    assert (event.error_type, event.reason) == ("ChecksumMismatch", "checksum")
    assert event.replica.endswith(str(api_settings.api_port))
