"""The one builder of a `ModelPromoted`: what tells every API replica which version to serve.

Used by the trainer (a version the gate promoted), the operator's rollback and pin
(`models.operations`) and the API's reload (the registry's current version).

An announcement names the version by its place in the model store (`models.store`) and is
signed: an HMAC-SHA256 of its canonical JSON (every field but the signature, keys sorted) with
the key the trainer and the API replicas share (`model_signing_key`, else the secrets file's).
Anyone who can write to the model-updates topic can write a record; only a holder of the key
can write one a replica serves.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

from ctrlgpt import secrets
from ctrlgpt.settings import Settings
from models.layout import manifest_path
from models.manifest import Manifest, read_manifest, sha256_of
from models.store import store_for
from streams.records import ModelPromoted

__all__ = ["canonical", "is_authentic", "model_update", "published", "sign", "signing_key", "unannounced"]

Action = Literal["promoted", "rolled_back", "pinned"]


def signing_key(settings: Settings) -> bytes:
    key = settings.model_signing_key or secrets.load_or_create(settings.secrets_file).model_signing_key
    return key.encode()


def canonical(record: ModelPromoted) -> bytes:
    """What the signature covers: every field but the signature, as JSON with sorted keys and no spaces."""
    fields = record.model_dump(mode="json", exclude={"signature"})
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sign(record: ModelPromoted, key: bytes) -> ModelPromoted:
    return record.model_copy(update={"signature": hmac.new(key, canonical(record), hashlib.sha256).hexdigest()})


def is_authentic(record: ModelPromoted, key: bytes) -> bool:
    expected = hmac.new(key, canonical(record), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, record.signature)


def model_update(
    uri: str,
    manifest: Manifest,
    manifest_sha256: str,
    *,
    key: bytes,
    action: Action = "promoted",
    reason: str = "",
) -> ModelPromoted:
    """Serve the version at `uri` in the model store, whose manifest (hashing to `manifest_sha256`) is `manifest`."""
    return sign(
        ModelPromoted(
            model_name=manifest.name,
            version=manifest.version,
            uri=uri,
            manifest_sha256=manifest_sha256,
            files=manifest.files,
            parent_version=manifest.parent_version,
            metrics=manifest.metrics,
            action=action,
            reason=reason,
        ),
        key,
    )


def published(settings: Settings, version_dir: Path, *, action: Action = "promoted", reason: str = "") -> ModelPromoted:
    """Publish the registered version in `version_dir` to the model store, completely, and return its
    signed announcement: nothing is announced that a replica could not fetch whole."""
    manifest = read_manifest(version_dir)
    uri = store_for(settings).publish(version_dir, manifest.name, manifest.version)
    return model_update(
        uri, manifest, sha256_of(manifest_path(version_dir)), key=signing_key(settings), action=action, reason=reason
    )


def unannounced(current: Mapping[str, str], announced: Sequence[ModelPromoted], key: bytes) -> list[str]:
    """The model names of `current` (name -> its registry's current version) that `announced` (a
    model-updates topic's records, in log order) leaves unserved: the name's last record is missing,
    fails its signature, or names another version. A replica that starts from the topic would serve
    nothing, or the wrong version, for those names until they are announced again."""
    last = {record.model_name: record for record in announced}
    return [
        name
        for name, version in current.items()
        if (record := last.get(name)) is None or record.version != version or not is_authentic(record, key)
    ]
