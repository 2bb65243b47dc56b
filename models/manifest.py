"""A registered model version describes itself: `manifest.json` beside its files.

Layout of one version directory (under `<registry_dir>/<model name>/<version>/`, names in `models.layout`):

    manifest.json          this Manifest
    policy/                the expansion policy: config.json, model.safetensors, tokenizer files;
                           or, for a LoRA version (`adapter` set), only adapter_config.json,
                           adapter_model.safetensors and the tokenizer: the base lives elsewhere,
                           named by `adapter.base_path` and pinned by the sha256 of its files
    reward/                the reward model (same shape), when the run trained one

The trainer writes it when it registers a version (`models.registry`); the API verifies and
loads a version from its manifest alone (`api/serving/model_loader.py`). Loading verifies every
file's sha256 first; weights are safetensors only.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from models.layout import MANIFEST

FORMAT = "ctrlgpt-model/1"
MANIFEST_REWRITE = "manifest.tmp"  # a status change writes the new manifest here, then renames it over the old
Status = Literal["candidate", "promoted", "rejected", "rolled_back"]


class ChecksumMismatch(RuntimeError):
    """A file of a version is missing or differs from its manifest."""


class AdapterRef(BaseModel):
    """A LoRA policy's base model: where it is and what its files must hash to."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["lora"] = "lora"
    base_name: str = Field(description="The base_model setting the base was prepared from (path or hub name).")
    base_path: str = Field(description="Directory of the prepared base model (safetensors, config, tokenizer).")
    base_files: dict[str, str] = Field(description="Relative path -> sha256 of every file of the base.")


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: Literal["ctrlgpt-model/1"] = FORMAT
    name: str = "expansion-policy"
    version: str
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    parent_version: str | None = None
    base_model: str = Field(description="What the policy started from: a path, a hub name, or 'bootstrap'.")
    target_sentiment: str = "positive"
    prompt_template: str = Field(
        "{prompt}\n\n", description="How the policy was shown a prompt in training; serving must show it the same way."
    )
    status: Status = "candidate"
    status_reason: str = ""
    files: dict[str, str] = Field(default_factory=dict, description="Relative path -> sha256 of every file.")
    metrics: dict[str, float] = Field(default_factory=dict)
    label_offsets: dict[str, int] = Field(
        default_factory=dict, description="Label-topic partition -> next offset trained on."
    )
    page_offsets: dict[str, int] = Field(
        default_factory=dict, description="Clean-page-topic partition -> next offset trained on."
    )
    adapter: AdapterRef | None = Field(None, description="Set when policy/ holds a LoRA adapter over a base model.")
    reward_hacking: bool = Field(
        False,
        description="The gate saw the reward rise by its margin while no independent judge's target rate rose "
        "(metrics: reward_hacking, the judges' rates).",
    )


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checksum_files_names(version_dir: Path) -> list[str]:
    """Relative paths of every file under the directory except its manifest (and the manifest being rewritten)."""
    return [
        str(path.relative_to(version_dir))
        for path in sorted(version_dir.rglob("*"))
        if path.is_file() and path.relative_to(version_dir).as_posix() not in (MANIFEST, MANIFEST_REWRITE)
    ]


def checksum_files(version_dir: Path) -> dict[str, str]:
    """sha256 of every file under the directory except its manifest."""
    return {name: sha256_of(version_dir / name) for name in checksum_files_names(version_dir)}


def write_manifest(version_dir: Path, manifest: Manifest, *, rehash: bool = True) -> str:
    """Write the manifest (with fresh checksums unless `rehash` is False); returns the manifest's own sha256.

    rehash=False keeps the recorded checksums: a status change must never bless files that changed since.
    """
    if rehash:
        manifest = manifest.model_copy(update={"files": checksum_files(version_dir)})
    path = version_dir / MANIFEST
    tmp = version_dir / MANIFEST_REWRITE
    tmp.write_text(manifest.model_dump_json(indent=2))
    tmp.replace(path)
    return sha256_of(path)


def read_manifest(version_dir: Path) -> Manifest:
    return Manifest.model_validate(json.loads((version_dir / MANIFEST).read_text()))


def verify(version_dir: Path, manifest_sha256: str | None = None) -> Manifest:
    """Check the manifest (against the announced sha256, if given) and every file it lists."""
    path = version_dir / MANIFEST
    if not path.is_file():
        raise ChecksumMismatch(f"{path} is missing")
    if manifest_sha256 is not None and sha256_of(path) != manifest_sha256:
        raise ChecksumMismatch(f"{path} does not match the announced sha256 {manifest_sha256}")
    manifest = read_manifest(version_dir)
    if not manifest.files:
        raise ChecksumMismatch(f"{path} lists no files")
    _check_files(version_dir, manifest.files, "listed in the manifest", "its sha256 in the manifest")
    unlisted = sorted(set(checksum_files_names(version_dir)) - set(manifest.files))
    if unlisted:
        # Seen: files beside a version's listed ones were never checked; a loader may read them all the same.
        raise ChecksumMismatch(f"{version_dir} holds files its manifest does not list: {unlisted}")
    if manifest.adapter is not None:
        verify_base(manifest.adapter)
    return manifest


def verify_base(adapter: AdapterRef) -> Path:
    """Check every file of a LoRA version's base against the sha256 the version was trained over."""
    base = Path(adapter.base_path)
    if not adapter.base_files:
        raise ChecksumMismatch(f"the adapter's base {base} lists no files")
    _check_files(base, adapter.base_files, "of the adapter's base", "the sha256 it was trained over")
    return base


def _check_files(root: Path, files: dict[str, str], listed: str, recorded: str) -> None:
    """Every file of `files` (relative path -> sha256) exists under `root` and matches; none is a pickle."""
    for relative, expected in files.items():
        file = root / relative
        if not file.is_file():
            raise ChecksumMismatch(f"{file} {listed} is missing")
        if sha256_of(file) != expected:
            raise ChecksumMismatch(f"{file} {listed} does not match {recorded}")
    _refuse_pickles(root, files)


def _refuse_pickles(directory: Path, files: dict[str, str]) -> None:
    unsafe = [name for name in files if name.endswith((".bin", ".pt", ".pth", ".ckpt", ".pkl"))]
    if unsafe:
        raise ChecksumMismatch(f"{directory} holds pickle-format weights {unsafe}; only safetensors are loaded")
