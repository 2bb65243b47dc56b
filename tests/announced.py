"""Announce a test's version as the trainer would: placed in the replica's model store, signed with its key."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Literal

from ctrlgpt.settings import Settings
from models.announcements import model_update, signing_key
from models.manifest import read_manifest, sha256_of
from models.store import store_for
from streams.records import ModelPromoted


def announced(
    settings: Settings,
    version_dir: Path,
    *,
    model_name: str | None = None,
    action: Literal["promoted", "rolled_back", "pinned"] = "promoted",
) -> ModelPromoted:
    """The signed announcement of the version in `version_dir`, under `model_name` (default: its manifest's name),
    copied first into `settings`' model registry when it lives elsewhere (a fixture's own directory)."""
    manifest = read_manifest(version_dir)
    name = model_name or manifest.name
    target = settings.registry_dir / name / manifest.version
    if target.resolve() != version_dir.resolve():
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(version_dir, target)
    return model_update(
        store_for(settings).uri(name, manifest.version),
        manifest.model_copy(update={"name": name}),
        sha256_of(target / "manifest.json"),
        key=signing_key(settings),
        action=action,
    )
