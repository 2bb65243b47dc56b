"""Model versions on disk, one registry per model name (the trainer keeps one policy per target,
`settings.policy_for(target)`), under `settings.registry_dir`:

    <registry_dir>/<model name>/v0001-1a2b3c4d/manifest.json, policy/, reward/    one directory per version
    <registry_dir>/<model name>/CURRENT                                             the promoted version's id
    <registry_dir>/<model name>/PINNED                                              a version an operator pinned, if any

Version ids sort by their number; the hash part comes from the run that made the version. A
version is assembled in a hidden staging directory the registry hands out (the trainer saves
`policy/` and `reward/` into it with its own helpers: the registry imports no training code),
then `register` writes its manifest and renames it into place whole; CURRENT is replaced
atomically, so a reader never sees half a version or half a pointer. Weights are safetensors
only; a version's files are checked against its manifest before it becomes current.

Each manifest records its status: candidate (just registered), promoted (passed the gate, or an
operator pinned it), rejected (failed the gate), rolled_back (an operator rolled back from it).
The operations (`rollback`, `pin`, `unpin`, `compare`) change or read the disk only and take a
lock, so the trainer and an operator never interleave pointer moves; `models.operations`
announces their result on Kafka.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from models import manifest
from models.layout import MANIFEST, PIN, POINTER
from models.manifest import Manifest

__all__ = [
    "Change",
    "Comparison",
    "Registered",
    "Registry",
    "UnknownVersion",
    "VersionConflict",
    "compare_manifests",
    "model_registry",
    "version_id",
    "version_number",
]

LOCK = ".lock"
_VERSION = re.compile(r"^v(\d{4,})-([0-9a-f]{8})$")
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_REGISTER_ATTEMPTS = 5


@dataclass(frozen=True)
class Registered:
    version: str
    path: Path
    manifest_sha256: str


class UnknownVersion(LookupError):
    """No such version in the registry."""


class VersionConflict(RuntimeError):
    """The version exists, but its status does not allow the operation."""


@dataclass(frozen=True)
class Change:
    """An operator's choice of the current version, to announce on the model-updates topic."""

    action: Literal["rolled_back", "pinned"]
    version: str
    previous: str | None
    reason: str
    path: Path
    manifest_sha256: str
    manifest: Manifest


@dataclass(frozen=True)
class Comparison:
    a: Manifest
    b: Manifest
    metrics: dict[str, tuple[float | None, float | None]]  # name -> (a's, b's)
    lineage_a: list[str]  # the version, its parent, the parent's parent, ...
    lineage_b: list[str]
    common_ancestor: str | None
    files_added: list[str]  # in b, not in a
    files_removed: list[str]  # in a, not in b
    files_changed: list[str]
    files_same: int


def compare_manifests(a: Manifest, b: Manifest, lineage_a: list[str], lineage_b: list[str]) -> Comparison:
    """Metrics side by side, both parent chains and their nearest common version, and which files differ."""
    names = sorted(set(a.metrics) | set(b.metrics))
    in_b = set(lineage_b)
    return Comparison(
        a=a,
        b=b,
        metrics={name: (a.metrics.get(name), b.metrics.get(name)) for name in names},
        lineage_a=lineage_a,
        lineage_b=lineage_b,
        common_ancestor=next((version for version in lineage_a if version in in_b), None),
        files_added=sorted(set(b.files) - set(a.files)),
        files_removed=sorted(set(a.files) - set(b.files)),
        files_changed=sorted(name for name in set(a.files) & set(b.files) if a.files[name] != b.files[name]),
        files_same=sum(1 for name in set(a.files) & set(b.files) if a.files[name] == b.files[name]),
    )


def version_id(number: int, run_id: str) -> str:
    return f"v{number:04d}-{hashlib.sha256(run_id.encode()).hexdigest()[:8]}"


def version_number(version: str) -> int:
    match = _VERSION.match(version)
    if not match:
        raise ValueError(f"not a version id: {version!r}")
    return int(match.group(1))


def model_registry(registry_dir: Path, model_name: str) -> Registry:
    """The registry of one model name: `<registry_dir>/<model name>/`."""
    if not _MODEL_NAME.match(model_name):
        raise ValueError(f"not a model name (letters, digits, '.', '_', '-'): {model_name!r}")
    return Registry(registry_dir / model_name)


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
        found = [p.name for p in self.root.iterdir() if _VERSION.match(p.name) and (p / MANIFEST).is_file()]
        return sorted(found, key=version_number)

    def current(self) -> str | None:
        """The promoted version the API should serve, or None before the first promotion."""
        pointer = self.root / POINTER
        if not pointer.is_file():
            return None
        version = pointer.read_text().strip()
        if not (self.path(version) / MANIFEST).is_file():
            raise FileNotFoundError(f"{pointer} names {version}, which is not registered")
        return version

    def current_dir(self) -> Path | None:
        version = self.current()
        return None if version is None else self.path(version)

    @contextmanager
    def staging(self) -> Iterator[Path]:
        """A hidden directory on the registry's filesystem to save a new version's files into, for
        `register`; removed on leaving unless `register` renamed it into place."""
        self.root.mkdir(parents=True, exist_ok=True)
        directory = self.root / f".staging-{uuid.uuid4().hex}"
        directory.mkdir()
        try:
            yield directory
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    def register(
        self,
        run_id: str,
        staging: Path,
        *,
        base_model: str,
        parent_version: str | None,
        target_sentiment: str,
        prompt_template: str,
        metrics: dict[str, float],
        label_offsets: dict[str, int],
        name: str = "expansion-policy",
        page_offsets: dict[str, int] | None = None,
        adapter: manifest.AdapterRef | None = None,
        reward_hacking: bool = False,
    ) -> Registered:
        """Make the finished files in `staging` (from `staging()`) a new version with status `candidate`,
        its manifest written; `promote` or `reject` decides its fate."""
        for _ in range(_REGISTER_ATTEMPTS):
            existing = self.versions()
            version = version_id(version_number(existing[-1]) + 1 if existing else 1, run_id)
            sha = manifest.write_manifest(
                staging,
                Manifest(
                    name=name,
                    version=version,
                    prompt_template=prompt_template,
                    parent_version=parent_version,
                    base_model=base_model,
                    target_sentiment=target_sentiment,
                    status="candidate",
                    metrics=metrics,
                    label_offsets=label_offsets,
                    page_offsets=page_offsets or {},
                    adapter=adapter,
                    reward_hacking=reward_hacking,
                ),
            )
            try:
                staging.rename(self.root / version)
                return Registered(version, self.root / version, sha)
            except OSError:
                # Another run took this number between listing and renaming: take the next one.
                if not (self.root / version).exists():
                    raise
        raise RuntimeError(f"could not register a version under {self.root} after {_REGISTER_ATTEMPTS} attempts")

    def manifest(self, version: str) -> Manifest:
        """The version's manifest as recorded (not verified); `UnknownVersion` when there is none."""
        try:
            directory = self.path(version)
        except ValueError:
            raise UnknownVersion(f"{version!r} is not a version id") from None
        if not (directory / MANIFEST).is_file():
            raise UnknownVersion(f"no version {version} under {self.root}")
        return manifest.read_manifest(directory)

    def manifests(self) -> list[Manifest]:
        """Every version's manifest, oldest first."""
        return [self.manifest(version) for version in self.versions()]

    def lineage(self, version: str) -> list[str]:
        """The version, its parent, the parent's parent ... as far as they are registered."""
        chain = [version]
        parent = self.manifest(version).parent_version
        while parent is not None and parent not in chain:
            chain.append(parent)
            try:
                parent = self.manifest(parent).parent_version
            except UnknownVersion:
                break  # a parent from another registry (a copied version): the chain names it and ends
        return chain

    def compare(self, a: str, b: str) -> Comparison:
        return compare_manifests(self.manifest(a), self.manifest(b), self.lineage(a), self.lineage(b))

    def pinned(self) -> str | None:
        """The version an operator pinned: the trainer's gate does not replace it until `unpin`."""
        pin = self.root / PIN
        return pin.read_text().strip() or None if pin.is_file() else None

    def promote(self, version: str, reason: str) -> str:
        """Mark the version promoted and point CURRENT at it; returns the manifest's new sha256."""
        with self._locked():
            pinned = self.pinned()
            if pinned is not None and pinned != version:
                raise VersionConflict(f"{pinned} is pinned: {version} is not promoted (unpin first)")
            sha = self._set_status(version, "promoted", reason)
            self._point_at(version)
            return sha

    def reject(self, version: str, reason: str) -> str:
        with self._locked():
            return self._set_status(version, "rejected", reason)

    def hold(self, version: str, reason: str) -> str:
        """Keep a version that passed the gate as a candidate (a pin holds CURRENT), with why."""
        with self._locked():
            return self._set_status(version, "candidate", reason)

    def rollback(self, version: str, reason: str) -> Change:
        """Make an earlier promoted version current; the version rolled back from becomes rolled_back.

        Rolling back to the version that is already current changes nothing and is answered the same
        (so a retry after a failed announcement is safe). An operator's rollback replaces a pin.
        """
        with self._locked():
            target = self.manifest(version)
            current = self.current()
            if current is None:
                raise VersionConflict("no version is current: there is nothing to roll back from")
            if version != current:
                if version_number(version) > version_number(current):
                    raise VersionConflict(f"{version} is newer than the current {current}: pin it instead")
                if target.status != "promoted":
                    raise VersionConflict(
                        f"{version} is {target.status}, not promoted: only a version that was promoted can be rolled back to"
                    )
            manifest.verify(self.path(version))
            (self.root / PIN).unlink(missing_ok=True)
            if version != current:
                self._point_at(version)
                # After the pointer: a crash in between leaves the old version marked promoted, never a
                # current version marked rolled_back. Its recorded checksums stay: it may be broken.
                self._set_status(current, "rolled_back", f"rolled back to {version}: {reason}", verify=False)
            return self._change("rolled_back", version, current if current != version else None, reason)

    def pin(self, version: str, reason: str) -> Change:
        """Make any registered, intact version current and keep it so: the gate promotes nothing until `unpin`."""
        with self._locked():
            self.manifest(version)
            current = self.current()
            self._set_status(version, "promoted", f"pinned: {reason}" if reason else "pinned")
            self.root.mkdir(parents=True, exist_ok=True)
            self._replace(self.root / PIN, version)
            self._point_at(version)
            return self._change("pinned", version, current if current != version else None, reason)

    def unpin(self) -> str | None:
        """Let the gate promote again; returns the version that was pinned, if any."""
        with self._locked():
            pinned = self.pinned()
            (self.root / PIN).unlink(missing_ok=True)
            return pinned

    def _change(
        self, action: Literal["rolled_back", "pinned"], version: str, previous: str | None, reason: str
    ) -> Change:
        directory = self.path(version)
        return Change(
            action=action,
            version=version,
            previous=previous,
            reason=reason,
            path=directory,
            manifest_sha256=manifest.sha256_of(directory / MANIFEST),
            manifest=manifest.read_manifest(directory),
        )

    def _set_status(self, version: str, status: manifest.Status, reason: str, *, verify: bool = True) -> str:
        directory = self.path(version)
        # Verified first: never bless files that changed since registration.
        recorded = manifest.verify(directory) if verify else manifest.read_manifest(directory)
        return manifest.write_manifest(
            directory, recorded.model_copy(update={"status": status, "status_reason": reason}), rehash=verify
        )

    def _point_at(self, version: str) -> None:
        self._replace(self.root / POINTER, version)

    @staticmethod
    def _replace(path: Path, version: str) -> None:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(version + "\n")
        tmp.replace(path)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """One status or pointer change at a time across processes (the trainer, the CLI, the API)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / LOCK, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
