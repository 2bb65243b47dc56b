"""The S3 model store against the real s3proxy that `ctrlgpt services up` starts: publish, fetch, refuse."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from buckets import own_bucket
from registry_versions import add_version

from ctrlgpt import objectstore
from models import manifest
from models.manifest import ChecksumMismatch
from models.registry import Registry
from models.store import MissingObjects, S3Store, store_for

pytestmark = pytest.mark.integration

NAME = "expansion-policy"


@pytest.fixture
def bucket(settings) -> Iterator[str]:
    with own_bucket(settings, "test-store") as name:
        yield name


def on_a_host_of_its_own(settings, data_dir, bucket):
    """Settings of a host with its own data directory: the store's keys given as settings, as on another machine."""
    keys = objectstore.credentials(settings)
    return settings.model_copy(
        update={
            "data_dir": data_dir,
            "model_store": f"s3://{bucket}/ctrlgpt",
            "objectstore_access_key": keys.access_key,
            "objectstore_secret_key": keys.secret_key,
        }
    )


@pytest.fixture
def trainer(settings, tmp_path, bucket):
    return on_a_host_of_its_own(settings, tmp_path / "trainer", bucket)


@pytest.fixture
def replica(settings, tmp_path, bucket):
    return on_a_host_of_its_own(settings, tmp_path / "replica", bucket)


@pytest.fixture
def version(trainer) -> tuple[Registry, str, str]:
    """A registered version in the trainer's registry: (registry, version, its manifest's sha256)."""
    registry = Registry(trainer.registry_dir / NAME)
    registered = add_version(registry, 1, weights=b"weights " * 1000)
    return registry, registered, manifest.sha256_of(registry.path(registered) / manifest.MANIFEST)


def test_a_published_version_is_fetched_whole_into_the_replica_s_cache(trainer, replica, bucket, version):
    registry, registered, sha = version
    uri = store_for(trainer).publish(registry.path(registered), NAME, registered)
    assert uri == f"s3://{bucket}/ctrlgpt/{NAME}/{registered}"
    fetched = store_for(replica).fetch(NAME, registered, sha)
    assert fetched == replica.model_cache_dir / NAME / registered
    assert manifest.verify(fetched, sha).files == registry.manifest(registered).files
    # The cached copy serves again without the store: it still verifies.
    objectstore.client(trainer).delete_object(Bucket=bucket, Key=f"ctrlgpt/{NAME}/{registered}/policy/config.json")
    assert store_for(replica).fetch(NAME, registered, sha) == fetched


def test_a_corrupted_object_is_refused_and_nothing_is_left_in_the_cache(trainer, replica, bucket, version):
    registry, registered, sha = version
    store_for(trainer).publish(registry.path(registered), NAME, registered)
    key = f"ctrlgpt/{NAME}/{registered}/policy/model.safetensors"
    objectstore.client(trainer).put_object(Bucket=bucket, Key=key, Body=b"corrupted " * 1000)
    with pytest.raises(ChecksumMismatch, match="model.safetensors"):
        store_for(replica).fetch(NAME, registered, sha)
    assert not any((replica.model_cache_dir / NAME).iterdir())


def test_an_object_the_manifest_does_not_list_is_refused(trainer, replica, bucket, version):
    registry, registered, sha = version
    store_for(trainer).publish(registry.path(registered), NAME, registered)
    key = f"ctrlgpt/{NAME}/{registered}/policy/extra.safetensors"
    objectstore.client(trainer).put_object(Bucket=bucket, Key=key, Body=b"unlisted")
    with pytest.raises(ChecksumMismatch, match=r"does not list: \['policy/extra.safetensors'\]"):
        store_for(replica).fetch(NAME, registered, sha)


def test_a_missing_object_or_version_is_refused(trainer, replica, bucket, version):
    registry, registered, sha = version
    store_for(trainer).publish(registry.path(registered), NAME, registered)
    objectstore.client(trainer).delete_object(Bucket=bucket, Key=f"ctrlgpt/{NAME}/{registered}/policy/config.json")
    with pytest.raises(MissingObjects, match="lacks"):
        store_for(replica).fetch(NAME, registered, sha)
    with pytest.raises(MissingObjects, match="has no manifest.json"):
        store_for(replica).fetch(NAME, "v0009-00000000", sha)


def test_a_manifest_other_than_the_announced_one_is_refused(trainer, replica, version):
    registry, registered, _ = version
    store_for(trainer).publish(registry.path(registered), NAME, registered)
    with pytest.raises(ChecksumMismatch, match="does not match the announced sha256"):
        store_for(replica).fetch(NAME, registered, "0" * 64)


def test_a_version_whose_files_changed_on_disk_is_never_published(trainer, bucket, version):
    """Nothing half-good reaches the store: publishing verifies first and uploads the manifest last."""
    registry, registered, _ = version
    (registry.path(registered) / "policy" / "config.json").write_text('{"changed": true}')
    with pytest.raises(ChecksumMismatch):
        store_for(trainer).publish(registry.path(registered), NAME, registered)
    client = objectstore.client(trainer)
    if bucket in {found["Name"] for found in client.list_buckets()["Buckets"]}:
        listed = client.list_objects_v2(Bucket=bucket).get("Contents", [])
        assert not [item["Key"] for item in listed if item["Key"].endswith(manifest.MANIFEST)]


def test_a_status_change_republishes_the_manifest_over_the_same_files(trainer, replica, version):
    registry, registered, _ = version
    store = store_for(trainer)
    assert isinstance(store, S3Store)
    store.publish(registry.path(registered), NAME, registered)
    new_sha = registry.promote(registered, "passed the gate")
    store.publish(registry.path(registered), NAME, registered)
    fetched = store_for(replica).fetch(NAME, registered, new_sha)
    assert manifest.read_manifest(fetched).status == "promoted"
