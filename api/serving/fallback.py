"""The last good version: what a replica serves when the version it should serve is refused.

Seen: the current version's weights corrupted on disk, the API restarted, and it served
nothing until a person repaired the file. Now a replica that has nothing to serve and
whose announced version fails to verify or load takes the newest *promoted* version of
the same model name older than the refused one, from the model registry, that verifies
(checksums) and loads. Rejected and rolled-back versions are never candidates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import structlog
import torch

from api.serving.model_loader import load_version
from api.serving.served_model import ServedModel
from ctrlgpt.settings import Settings
from models.manifest import Manifest
from models.registry import model_registry, version_number

__all__ = ["LastGood", "fallback_candidates", "load_last_good"]

log = structlog.get_logger()


def _number(version: str) -> int | None:
    try:
        return version_number(version)
    except ValueError:
        return None


def fallback_candidates(manifests: Sequence[Manifest], refused: str) -> list[str]:
    """Promoted versions to try in place of `refused`, newest first: those older than it when it is a version id."""
    refused_number = _number(refused)
    promoted = [
        (number, m.version)
        for m in manifests
        if m.status == "promoted" and m.version != refused and (number := _number(m.version)) is not None
    ]
    if refused_number is not None:
        promoted = [(number, version) for number, version in promoted if number < refused_number]
    return [version for _, version in sorted(promoted, reverse=True)]


@dataclass(frozen=True)
class LastGood:
    served: ServedModel | None
    tried: dict[str, str]  # version -> why it could not serve either


def load_last_good(settings: Settings, model_name: str, refused: str, device: torch.device) -> LastGood:
    """Load the newest candidate that verifies and loads; `served` is None when none does."""
    registry = model_registry(settings.registry_dir, model_name)
    tried: dict[str, str] = {}
    for version in fallback_candidates(registry.manifests(), refused):
        try:
            # No announced manifest sha256 to hold it to (status changes rewrite the manifest): its files
            # are checked against the manifest they were registered with.
            served = load_version(registry.path(version), None, device=device, expected_version=version)
        except Exception as exc:
            tried[version] = f"{type(exc).__name__}: {exc}"
            log.warning("model.fallback_candidate_failed", model_name=model_name, version=version, error=str(exc))
            continue
        return LastGood(served, tried)
    return LastGood(None, tried)
