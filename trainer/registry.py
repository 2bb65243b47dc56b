"""Model versions on disk, under `settings.registry_dir`:

    <registry_dir>/v0001-1a2b3c4d/manifest.json, policy/, reward/    one directory per version
    <registry_dir>/CURRENT                                             the promoted version's id

Version ids sort by their number; the hash part comes from the run that made the version. A
version is assembled in a hidden staging directory and renamed into place whole, and CURRENT is
replaced atomically, so a reader never sees half a version or half a pointer. Weights are
safetensors only; a version's files are checked against its manifest before it is promoted.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from trainer import hf, manifest
from trainer.data import PROMPT_END
from trainer.manifest import Manifest

__all__ = ["Registered", "Registry", "version_id", "version_number"]

POINTER = "CURRENT"
_VERSION = re.compile(r"^v(\d{4,})-([0-9a-f]{8})$")
_REGISTER_ATTEMPTS = 5


@dataclass(frozen=True)
class Registered:
    version: str
    path: Path
    manifest_sha256: str


def version_id(number: int, run_id: str) -> str:
    return f"v{number:04d}-{hashlib.sha256(run_id.encode()).hexdigest()[:8]}"


def version_number(version: str) -> int:
    match = _VERSION.match(version)
    if not match:
        raise ValueError(f"not a version id: {version!r}")
    return int(match.group(1))


class Registry:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, version: str) -> Path:
        version_number(version)  # refuses anything that is not a version id, e.g. a path
        return self.root / version

    def versions(self) -> list[str]:
        """Registered versions, oldest first."""
        if not self.root.is_dir():
            return []
        found = [p.name for p in self.root.iterdir() if _VERSION.match(p.name) and (p / manifest.MANIFEST).is_file()]
        return sorted(found, key=version_number)

    def current(self) -> str | None:
        """The promoted version the API should serve, or None before the first promotion."""
        pointer = self.root / POINTER
        if not pointer.is_file():
            return None
        version = pointer.read_text().strip()
        if not (self.path(version) / manifest.MANIFEST).is_file():
            raise FileNotFoundError(f"{pointer} names {version}, which is not registered")
        return version

    def current_dir(self) -> Path | None:
        version = self.current()
        return None if version is None else self.path(version)

    def register(
        self,
        run_id: str,
        *,
        policy: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        reward_model: PreTrainedModel,
        reward_tokenizer: PreTrainedTokenizerBase,
        base_model: str,
        parent_version: str | None,
        target_sentiment: str,
        metrics: dict[str, float],
        label_offsets: dict[str, int],
        name: str = "expansion-policy",
    ) -> Registered:
        """Save a new version with status `candidate`; `promote` or `reject` decides its fate."""
        self.root.mkdir(parents=True, exist_ok=True)
        for _ in range(_REGISTER_ATTEMPTS):
            existing = self.versions()
            version = version_id(version_number(existing[-1]) + 1 if existing else 1, run_id)
            staging = self.root / f".staging-{version}"
            shutil.rmtree(staging, ignore_errors=True)
            try:
                hf.save(policy, tokenizer, staging / "policy")
                hf.save(reward_model, reward_tokenizer, staging / "reward")
                sha = manifest.write_manifest(
                    staging,
                    Manifest(
                        name=name,
                        version=version,
                        prompt_template="{prompt}" + PROMPT_END,
                        parent_version=parent_version,
                        base_model=base_model,
                        target_sentiment=target_sentiment,
                        status="candidate",
                        metrics=metrics,
                        label_offsets=label_offsets,
                    ),
                )
                staging.rename(self.root / version)
                return Registered(version, self.root / version, sha)
            except OSError:
                # Another run took this number between listing and renaming: take the next one.
                if not (self.root / version).exists():
                    raise
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        raise RuntimeError(f"could not register a version under {self.root} after {_REGISTER_ATTEMPTS} attempts")

    def _set_status(self, version: str, status: manifest.Status, reason: str) -> str:
        directory = self.path(version)
        current = manifest.verify(directory)  # never bless files that changed since registration
        return manifest.write_manifest(
            directory, current.model_copy(update={"status": status, "status_reason": reason})
        )

    def promote(self, version: str, reason: str) -> str:
        """Mark the version promoted and point CURRENT at it; returns the manifest's new sha256."""
        sha = self._set_status(version, "promoted", reason)
        pointer = self.root / POINTER
        tmp = pointer.with_name(f".{POINTER}.{os.getpid()}.tmp")
        tmp.write_text(version + "\n")
        tmp.replace(pointer)
        return sha

    def reject(self, version: str, reason: str) -> str:
        return self._set_status(version, "rejected", reason)
