"""The one builder of a `ModelPromoted`: what tells every API replica which version to serve.

Used by the trainer (a version the gate promoted), the operator's rollback and pin
(`models.operations`) and the API's reload (the registry's current version).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from models.manifest import Manifest
from streams.records import ModelPromoted

__all__ = ["model_update"]


def model_update(
    version_dir: Path,
    manifest: Manifest,
    manifest_sha256: str,
    *,
    action: Literal["promoted", "rolled_back", "pinned"] = "promoted",
    reason: str = "",
) -> ModelPromoted:
    """Serve the version in `version_dir`, whose manifest (as recorded, hashing to `manifest_sha256`) is `manifest`."""
    return ModelPromoted(
        model_name=manifest.name,
        version=manifest.version,
        path=str(version_dir),
        manifest_sha256=manifest_sha256,
        parent_version=manifest.parent_version,
        metrics=manifest.metrics,
        action=action,
        reason=reason,
    )
