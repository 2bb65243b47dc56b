"""The model store's pure parts: which store the settings name, where a version is, what is refused."""

from __future__ import annotations

import pytest
from registry_versions import add_version

from ctrlgpt.settings import Settings
from models import manifest
from models.manifest import ChecksumMismatch, Manifest
from models.registry import Registry
from models.store import LocalStore, OutsideStore, S3Store, _relative_names, locate, store_for


def test_the_settings_pick_the_registry_directory_or_a_bucket(tmp_path):
    assert isinstance(store_for(Settings(data_dir=tmp_path)), LocalStore)
    s3 = store_for(Settings(data_dir=tmp_path, model_store="s3://models/ctrlgpt/prod/"))
    assert isinstance(s3, S3Store) and (s3.bucket, s3.prefix) == ("models", "ctrlgpt/prod")
    assert s3.uri("expansion-policy", "v0001-1a2b3c4d") == "s3://models/ctrlgpt/prod/expansion-policy/v0001-1a2b3c4d"
    assert store_for(Settings(data_dir=tmp_path, model_store="s3://models")).uri("m", "v1") == "s3://models/m/v1"
    with pytest.raises(ValueError, match="s3://BUCKET/PREFIX"):
        store_for(Settings(data_dir=tmp_path, model_store="/srv/models"))


def test_an_announced_uri_must_be_the_store_s_own_place_for_the_version(tmp_path):
    store = LocalStore(tmp_path / "models")
    locate(store, "expansion-policy", "v1", f"{(tmp_path / 'models').resolve().as_uri()}/expansion-policy/v1")
    for uri in (
        f"{tmp_path.as_uri()}/elsewhere/expansion-policy/v1",
        f"{(tmp_path / 'models').resolve().as_uri()}/expansion-policy/v2",
        "s3://models/expansion-policy/v1",
        str(tmp_path / "models" / "expansion-policy" / "v1"),
    ):
        with pytest.raises(OutsideStore):
            locate(store, "expansion-policy", "v1", uri)
    for name, version in (("..", "v1"), ("expansion-policy", "../v1"), ("a/b", "v1"), ("expansion-policy", "")):
        with pytest.raises(OutsideStore):
            locate(store, name, version, store.uri(name, version))


def test_a_link_in_the_registry_to_a_directory_elsewhere_is_not_in_the_store(tmp_path):
    elsewhere = Registry(tmp_path / "elsewhere" / "expansion-policy")
    version = add_version(elsewhere, 1)
    store = LocalStore(tmp_path / "models")
    (tmp_path / "models" / "expansion-policy").mkdir(parents=True)
    (tmp_path / "models" / "expansion-policy" / version).symlink_to(elsewhere.path(version))
    with pytest.raises(OutsideStore):
        store.fetch("expansion-policy", version, "0" * 64)


def test_manifest_entries_that_leave_the_version_are_refused():
    for name in ("../outside.safetensors", "/etc/passwd", "policy/../../x"):
        with pytest.raises(ChecksumMismatch, match="outside the version"):
            _relative_names(Manifest(version="v1", base_model="b", files={name: "0" * 64}))


def test_a_file_the_manifest_does_not_list_fails_verification(tmp_path):
    registry = Registry(tmp_path / "expansion-policy")
    version = add_version(registry, 1)
    assert manifest.verify(registry.path(version))
    (registry.path(version) / "policy" / "extra.bin").write_bytes(b"unlisted")
    with pytest.raises(ChecksumMismatch, match=r"does not list: \['policy/extra.bin'\]"):
        manifest.verify(registry.path(version))
