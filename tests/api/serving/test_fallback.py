"""The last good version: which versions are candidates, and that a broken candidate is skipped."""

from __future__ import annotations

import shutil

import torch

from api.serving.fallback import fallback_candidates, load_last_good
from ctrlgpt.settings import Settings
from models import manifest
from models.manifest import Manifest
from models.registry import model_registry, version_id

NAME = "expansion-policy-positive"


def _manifest(number: int, status: str) -> Manifest:
    return Manifest(version=version_id(number, f"run-{number}"), base_model="bootstrap", status=status)


def test_candidates_are_the_promoted_versions_older_than_the_refused_one_newest_first():
    manifests = [
        _manifest(1, "promoted"),
        _manifest(2, "rejected"),
        _manifest(3, "promoted"),
        _manifest(4, "rolled_back"),
        _manifest(5, "promoted"),
        _manifest(6, "promoted"),
    ]
    refused = version_id(5, "run-5")
    assert fallback_candidates(manifests, refused) == [version_id(3, "run-3"), version_id(1, "run-1")]
    assert fallback_candidates(manifests, version_id(1, "run-1")) == []


def test_a_refused_version_that_is_not_a_version_id_may_fall_back_to_any_promoted_version():
    manifests = [_manifest(1, "promoted"), _manifest(2, "candidate"), _manifest(3, "promoted")]
    assert fallback_candidates(manifests, "hand-made") == [version_id(3, "run-3"), version_id(1, "run-1")]


def test_the_newest_candidate_that_verifies_and_loads_serves_and_the_broken_ones_are_reported(tmp_path, make_version):
    settings = Settings(data_dir=tmp_path)
    registry = model_registry(settings.registry_dir, NAME)
    versions = []
    for number in (1, 2, 3):
        version = version_id(number, f"run-{number}")
        shutil.copytree(make_version(f"fixture-{number}", name=NAME, seed=number).path, registry.path(version))
        recorded = manifest.read_manifest(registry.path(version))
        manifest.write_manifest(registry.path(version), recorded.model_copy(update={"version": version}))
        versions.append(version)
    weights = registry.path(versions[1]) / "policy" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1])  # the second is broken too

    last_good = load_last_good(settings, NAME, versions[2], torch.device("cpu"))
    assert last_good.served is not None and last_good.served.version == versions[0]
    assert list(last_good.tried) == [versions[1]] and "ChecksumMismatch" in last_good.tried[versions[1]]

    nothing = load_last_good(settings, NAME, versions[0], torch.device("cpu"))
    assert (nothing.served, nothing.tried) == (None, {})
