"""Load a registered model version from its directory: verify, load, warm up.

Nothing here touches the served reference: a version either loads completely or
raises, and the caller swaps only a loaded one in. The warm-up runs the version as a
request would (one smoke generation, one sentiment score when it has a reward model):
weights that load but cannot serve, NaNs say, fail here and not on a request.
"""

from __future__ import annotations

import math
import threading
from datetime import UTC, datetime
from pathlib import Path

import structlog
import torch

from api.serving.generation import SamplingParams, generate
from api.serving.sentiment import load_scorer
from api.serving.served_model import ServedModel
from models import manifest as manifests
from models.policy import load_policy
from models.reward_scoring import has_reward_model

log = structlog.get_logger()

WARM_UP = SamplingParams(prompt="Hello", max_new_tokens=2, seed=0)

# transformers' loading is not thread-safe (its meta-device context is global), and one process may
# load two versions at once: the model-updates follower (retrying a version once the store is back,
# say) while an admin reload loads another, or several apps in one process. One load at a time.
_LOADING = threading.Lock()


class VersionMismatch(RuntimeError):
    """The directory holds a different version than the one announced."""


class WarmUpFailed(RuntimeError):
    """The version loaded but its smoke generation or smoke score failed."""


def load_version(
    version_dir: Path, manifest_sha256: str | None, *, device: torch.device, expected_version: str | None = None
) -> ServedModel:
    """Verify every checksum, then load the policy and reward model (safetensors only) onto `device` and warm
    them up there: a version that does not fit the GPU fails here, while the old one keeps serving."""
    manifest = manifests.verify(version_dir, manifest_sha256)
    if expected_version is not None and manifest.version != expected_version:
        raise VersionMismatch(
            f"{version_dir} holds version {manifest.version!r}, not the announced {expected_version!r}"
        )
    log.info(
        "model.loading",
        version=manifest.version,
        path=str(version_dir),
        adapter=manifest.adapter is not None,
        device=str(device),
    )
    # Full weights, or a LoRA adapter folded into its base (whose checksums `verify` checked too).
    with _LOADING:
        model, tokenizer = load_policy(version_dir, manifest)
        model.to(device).eval()
        scorer = load_scorer(version_dir, manifest, device) if has_reward_model(manifest) else None
    served = ServedModel(
        version=manifest.version,
        tokenizer=tokenizer,
        model=model,
        manifest=manifest,
        path=version_dir,
        loaded_at=datetime.now(UTC),
        scorer=scorer,
    )
    smoke_tokens = warm_up(served)
    log.info("model.loaded", version=manifest.version, warm_up_tokens=smoke_tokens, scorer=served.scorer is not None)
    return served


def warm_up(served: ServedModel) -> int:
    """One smoke generation (and one score); returns the tokens generated, raises `WarmUpFailed`."""
    try:
        smoke = generate(served, WARM_UP)
        scores = served.scorer.classify([WARM_UP.prompt]) if served.scorer is not None else []
    except Exception as exc:
        raise WarmUpFailed(f"version {served.version} failed its warm-up: {type(exc).__name__}: {exc}") from exc
    if not all(math.isfinite(one.score) for one in scores):
        raise WarmUpFailed(f"version {served.version}'s reward model scored the warm-up text {scores[0].score}")
    return smoke.completion_tokens
