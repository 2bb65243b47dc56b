"""Loading a registered version: checksums first, safetensors only, warmed up."""

from __future__ import annotations

import pytest
import torch

from api.serving.model_loader import VersionMismatch, load_version
from models.manifest import ChecksumMismatch, Manifest, sha256_of, write_manifest

CPU = torch.device("cpu")


def test_loads_a_verified_version_in_eval_mode(v2):
    served = v2.load()
    assert served.version == "v2"
    assert served.manifest.parent_version == "v1"
    assert not served.model.training
    assert served.tokenizer.eos_token == "<|endoftext|>"


def test_refuses_weights_changed_after_the_manifest(tampered):
    version = tampered("v-tampered-loader")
    with pytest.raises(ChecksumMismatch, match="model.safetensors"):
        version.load()


def test_refuses_a_manifest_other_than_the_announced_one(v1):
    with pytest.raises(ChecksumMismatch, match="announced sha256"):
        load_version(v1.path, "0" * 64, device=CPU)


def test_refuses_a_directory_holding_another_version(v1):
    with pytest.raises(VersionMismatch, match="'v1', not the announced 'v9'"):
        load_version(v1.path, v1.manifest_sha256, device=CPU, expected_version="v9")


def test_refuses_pickle_weights(make_version):
    version = make_version("v-pickle")
    (version.path / "policy" / "pytorch_model.bin").write_bytes(b"not loaded, ever")
    manifest_sha = write_manifest(version.path, Manifest(version="v-pickle", base_model="bootstrap"))
    assert manifest_sha == sha256_of(version.path / "manifest.json")
    with pytest.raises(ChecksumMismatch, match="pickle"):
        load_version(version.path, manifest_sha, device=CPU)
