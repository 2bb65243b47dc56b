"""The names of a model version's parts on disk, spelled here only.

<registry_dir>/<model name>/CURRENT               the promoted version's id
<registry_dir>/<model name>/PINNED                a version an operator pinned, if any
<registry_dir>/<model name>/<version>/manifest.json
<registry_dir>/<model name>/<version>/policy/     the expansion policy (full weights or a LoRA adapter)
<registry_dir>/<model name>/<version>/reward/     the reward model, when the run trained one
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["MANIFEST", "PIN", "POINTER", "POLICY_DIR", "REWARD_DIR", "manifest_path", "policy_dir", "reward_dir"]

MANIFEST = "manifest.json"
POLICY_DIR = "policy"
REWARD_DIR = "reward"
POINTER = "CURRENT"
PIN = "PINNED"


def policy_dir(version_dir: Path) -> Path:
    return version_dir / POLICY_DIR


def reward_dir(version_dir: Path) -> Path:
    return version_dir / REWARD_DIR


def manifest_path(version_dir: Path) -> Path:
    return version_dir / MANIFEST
