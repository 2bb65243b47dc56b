"""Registered versions without real weights, for tests of registry operations (they read manifests and checksums only)."""

from __future__ import annotations

from models import manifest
from models.manifest import Manifest
from models.registry import Registry, version_id


def add_version(
    registry: Registry,
    number: int,
    *,
    status: str = "candidate",
    parent: str | None = None,
    weights: bytes = b"w",
    metrics: dict[str, float] | None = None,
    name: str = "expansion-policy",
) -> str:
    version = version_id(number, f"run-{number}")
    directory = registry.root / version
    (directory / "policy").mkdir(parents=True)
    (directory / "policy" / "model.safetensors").write_bytes(weights)
    (directory / "policy" / "config.json").write_text("{}")
    manifest.write_manifest(
        directory,
        Manifest(
            name=name,
            version=version,
            parent_version=parent,
            base_model="bootstrap",
            status=status,
            metrics=metrics or {"candidate_reward_mean": float(number)},
            label_offsets={"0": 10 * number},
        ),
    )
    return version
