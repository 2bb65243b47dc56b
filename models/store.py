"""Where model versions are published for the API replicas: the one artifact-store interface.

    store = store_for(settings)
    uri = store.publish(version_dir, model_name, version)    # the trainer, before announcing
    local_dir = store.fetch(model_name, version, manifest_sha256)  # an API replica, before loading

Two stores, chosen by the `model_store` setting:

- `LocalStore` (empty setting, the default): the model registry directory itself, on one machine
  as before. Publishing copies nothing; fetching hands back the registered directory.
- `S3Store` (`s3://BUCKET/PREFIX`): an S3-compatible object store (the local s3proxy, or a
  cluster's). Publishing uploads every file the manifest lists, then the manifest, so a reader
  that finds the manifest finds every file. Fetching downloads into the replica's own cache
  (`settings.model_cache_dir`), refusing a manifest other than the announced one, any object the
  manifest does not list, and any file whose sha256 differs; only a verified copy is moved into
  place.

A store that is away (connection refused or reset, a timeout, a 5xx, throttling; for the local
store, a mount that went away) raises `StoreUnavailable`: a pause that the caller retries
(`ctrlgpt.objectstore.is_transient` says which errors are). What the store answers about the
version itself is a refusal, which no retry changes: an object missing (`MissingObjects`), a
checksum that differs or an unlisted object (`ChecksumMismatch`), a place outside the store
(`OutsideStore`).

A version is named by its URI, computed from the store and the (model name, version) pair:
`locate` refuses an announced URI that is not exactly that, so a replica loads nothing from
outside its own store.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import uuid
from pathlib import Path, PurePosixPath
from typing import Protocol
from urllib.parse import urlsplit

import structlog

from ctrlgpt import objectstore
from ctrlgpt.objectstore import StoreUnavailable, unavailable_as_pause
from ctrlgpt.settings import Settings
from models.layout import MANIFEST
from models.manifest import ChecksumMismatch, Manifest, verify

__all__ = [
    "LocalStore",
    "MissingObjects",
    "ModelStore",
    "OutsideStore",
    "S3Store",
    "StoreUnavailable",
    "locate",
    "store_for",
]

log = structlog.get_logger()

# A model name or version is one path component: letters, digits, '.', '_', '-', not starting with a dot.
_COMPONENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class OutsideStore(ValueError):
    """An announced version that is not in this replica's model store (another place, a host path, '..')."""


class MissingObjects(LookupError):
    """The store answers, and the version's manifest or some of its files are not in it."""


class ModelStore(Protocol):
    url: str

    def uri(self, model_name: str, version: str) -> str: ...

    def publish(self, version_dir: Path, model_name: str, version: str) -> str: ...

    def fetch(self, model_name: str, version: str, manifest_sha256: str) -> Path: ...


def _component(value: str, what: str) -> str:
    if not _COMPONENT.match(value):
        raise OutsideStore(f"{what} {value!r} is not a plain name (letters, digits, '.', '_', '-')")
    return value


def locate(store: ModelStore, model_name: str, version: str, uri: str) -> None:
    """Refuse an announced URI other than the one this store gives the (model name, version)."""
    expected = store.uri(_component(model_name, "model name"), _component(version, "version"))
    if uri != expected:
        raise OutsideStore(f"{uri!r} is not version {version} of {model_name} in this replica's store ({expected})")


def _relative_names(manifest: Manifest) -> list[str]:
    """The manifest's file names, each a relative path that stays inside the version."""
    names = []
    for name in manifest.files:
        path = PurePosixPath(name)
        if path.is_absolute() or ".." in path.parts or not path.parts:
            raise ChecksumMismatch(f"the manifest of {manifest.version} lists {name!r}, a path outside the version")
        names.append(path.as_posix())
    return names


class LocalStore:
    """The model registry directory: what the trainer registers is what the API loads (one machine)."""

    def __init__(self, registry_dir: Path) -> None:
        self.root = registry_dir.resolve()
        self.url = self.root.as_uri()

    def uri(self, model_name: str, version: str) -> str:
        return f"{self.url}/{model_name}/{version}"

    def publish(self, version_dir: Path, model_name: str, version: str) -> str:
        self._inside(version_dir, model_name, version)
        return self.uri(model_name, version)

    def fetch(self, model_name: str, version: str, manifest_sha256: str) -> Path:
        # The registry may be a network mount shared by several hosts: one that went away is a pause.
        with unavailable_as_pause(f"the model registry {self.root}"):
            directory = self._inside(self.root / model_name / version, model_name, version)
            found = (directory / MANIFEST).is_file()
        if not found:
            raise ChecksumMismatch(f"{directory / MANIFEST} is missing")
        return directory

    def _inside(self, version_dir: Path, model_name: str, version: str) -> Path:
        # Resolved: a symbolic link inside the registry that points elsewhere is elsewhere.
        if version_dir.resolve() != self.root / model_name / version:
            raise OutsideStore(f"{version_dir} is not {model_name}/{version} of the model registry {self.root}")
        return version_dir


class S3Store:
    """An S3-compatible bucket; `url` is s3://BUCKET or s3://BUCKET/PREFIX."""

    def __init__(self, url: str, settings: Settings, cache_dir: Path) -> None:
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ValueError(f"model_store must be empty or s3://BUCKET/PREFIX, got {url!r}")
        self.bucket = parts.netloc
        self.prefix = "/".join(part for part in parts.path.split("/") if part)
        self.url = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        self._settings = settings
        self.cache_dir = cache_dir

    def uri(self, model_name: str, version: str) -> str:
        return f"{self.url}/{model_name}/{version}"

    def _key(self, model_name: str, version: str, name: str = "") -> str:
        return "/".join(part for part in (self.prefix, model_name, version, name) if part)

    def publish(self, version_dir: Path, model_name: str, version: str) -> str:
        """Upload every listed file, then the manifest (a reader that finds the manifest finds them all).

        Only what the manifest lists goes up; an object already there with the same sha256 is kept.
        """
        manifest = verify(version_dir)
        client = objectstore.client(self._settings)
        self._ensure_bucket(client)
        existing = self._names(client, model_name, version)
        uploaded = 0
        for name in _relative_names(manifest):
            key = self._key(model_name, version, name)
            # A rollback or pin republishes a version whose files are there already: only its manifest changed.
            if name in existing and self._recorded_sha256(client, key) == manifest.files[name]:
                continue
            client.upload_file(
                str(version_dir / name), self.bucket, key, ExtraArgs={"Metadata": {"sha256": manifest.files[name]}}
            )
            uploaded += 1
        client.upload_file(str(version_dir / MANIFEST), self.bucket, self._key(model_name, version, MANIFEST))
        log.info(
            "model_store.published", uri=self.uri(model_name, version), files=len(manifest.files), uploaded=uploaded
        )
        return self.uri(model_name, version)

    def fetch(self, model_name: str, version: str, manifest_sha256: str) -> Path:
        """A verified local copy of the version: the cached one if it still verifies, else downloaded."""
        target = self.cache_dir / model_name / version
        if target.is_dir():
            try:
                verify(target, manifest_sha256)
                return target
            except ChecksumMismatch as exc:
                log.warning("model_store.cache_stale", path=str(target), error=str(exc))
        with unavailable_as_pause(f"fetching {self.uri(model_name, version)}"):
            return self._download(model_name, version, manifest_sha256, target)

    def _download(self, model_name: str, version: str, manifest_sha256: str, target: Path) -> Path:
        client = objectstore.client(self._settings)
        try:
            body = client.get_object(Bucket=self.bucket, Key=self._key(model_name, version, MANIFEST))["Body"].read()
        except (client.exceptions.NoSuchKey, client.exceptions.NoSuchBucket):
            raise MissingObjects(f"{self.uri(model_name, version)} has no {MANIFEST}") from None
        if hashlib.sha256(body).hexdigest() != manifest_sha256:
            raise ChecksumMismatch(
                f"{self.uri(model_name, version)}/{MANIFEST} does not match the announced sha256 {manifest_sha256}"
            )
        manifest = Manifest.model_validate_json(body)
        names = _relative_names(manifest)
        stored = self._names(client, model_name, version)
        unlisted = sorted(stored - set(names))
        if unlisted:
            raise ChecksumMismatch(
                f"{self.uri(model_name, version)} holds objects its manifest does not list: {unlisted}"
            )
        missing = sorted(set(names) - stored)
        if missing:
            raise MissingObjects(f"{self.uri(model_name, version)} lacks {missing}")
        staging = self.cache_dir / model_name / f".download-{uuid.uuid4().hex}"
        try:
            staging.mkdir(parents=True)
            (staging / MANIFEST).write_bytes(body)
            for name in names:
                (staging / name).parent.mkdir(parents=True, exist_ok=True)
                client.download_file(self.bucket, self._key(model_name, version, name), str(staging / name))
            verify(staging, manifest_sha256)
            shutil.rmtree(target, ignore_errors=True)
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        log.info("model_store.fetched", uri=self.uri(model_name, version), files=len(names), path=str(target))
        return target

    def _names(self, client, model_name: str, version: str) -> set[str]:
        """Relative names of every object under the version, its manifest and directory markers excepted
        (s3proxy's filesystem backend lists a directory as an empty key ending in '/': no file has that name)."""
        prefix = self._key(model_name, version) + "/"
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        keys = (item["Key"] for page in pages for item in page.get("Contents", []))
        return {key[len(prefix) :] for key in keys if not key.endswith("/")} - {MANIFEST}

    def _recorded_sha256(self, client, key: str) -> str | None:
        return client.head_object(Bucket=self.bucket, Key=key).get("Metadata", {}).get("sha256")

    def _ensure_bucket(self, client) -> None:
        try:
            client.head_bucket(Bucket=self.bucket)
        except client.exceptions.ClientError:
            client.create_bucket(Bucket=self.bucket)


def store_for(settings: Settings) -> ModelStore:
    """The model store the settings name: the registry directory, or an S3 bucket."""
    if not settings.model_store:
        return LocalStore(settings.registry_dir)
    return S3Store(settings.model_store, settings, settings.model_cache_dir)
