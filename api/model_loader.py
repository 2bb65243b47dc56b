"""Load a registered model version from its directory: verify, load, warm up.

Nothing here touches the served reference: a version either loads completely or
raises, and the caller swaps only a loaded one in.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import structlog
from transformers import AutoModelForCausalLM, AutoTokenizer

from api.generation import SamplingParams, generate
from api.served_model import ServedModel
from trainer import manifest as manifests

log = structlog.get_logger()

POLICY_DIR = "policy"
WARM_UP = SamplingParams(prompt="Hello", max_new_tokens=2, seed=0)


class VersionMismatch(RuntimeError):
    """The directory holds a different version than the one announced."""


def load_version(version_dir: Path, manifest_sha256: str | None, *, expected_version: str | None = None) -> ServedModel:
    """Verify every checksum, then load the policy (safetensors only) and run one smoke generation."""
    manifest = manifests.verify(version_dir, manifest_sha256)
    if expected_version is not None and manifest.version != expected_version:
        raise VersionMismatch(f"{version_dir} holds version {manifest.version!r}, not the announced {expected_version!r}")
    policy = version_dir / POLICY_DIR
    log.info("model.loading", version=manifest.version, path=str(policy))
    tokenizer = AutoTokenizer.from_pretrained(policy)
    model = AutoModelForCausalLM.from_pretrained(policy, use_safetensors=True)
    model.eval()
    served = ServedModel(
        version=manifest.version,
        tokenizer=tokenizer,
        model=model,
        manifest=manifest,
        loaded_at=datetime.now(timezone.utc),
    )
    smoke = generate(served, WARM_UP)
    log.info("model.loaded", version=manifest.version, warm_up_tokens=smoke.completion_tokens)
    return served
