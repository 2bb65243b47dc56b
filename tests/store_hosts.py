"""A trainer and two API replicas as on three hosts: one S3 model store, one signing key, data directories apart."""

from __future__ import annotations

import secrets
from pathlib import Path

import httpx

from ctrlgpt import objectstore
from ctrlgpt.settings import Settings


def trainer_and_replicas(
    settings: Settings, tmp_path: Path, bucket: str, policy_name: str
) -> tuple[Settings, list[Settings]]:
    """What every host is given: the store and its keys (the stack's s3proxy's, as settings, as on another
    host), the signing key, a model name of the test's own; each its own data directory and replica id."""
    keys = objectstore.credentials(settings)
    shared = {
        "model_store": f"s3://{bucket}/models",
        "objectstore_access_key": keys.access_key,
        "objectstore_secret_key": keys.secret_key,
        "model_signing_key": secrets.token_urlsafe(32),
        "policy_name": policy_name,
        "max_new_tokens_limit": 16,
    }
    trainer = settings.model_copy(update={**shared, "data_dir": tmp_path / "trainer"})
    replicas = [
        settings.model_copy(
            update={**shared, "data_dir": tmp_path / f"replica-{one}", "api_replica_id": f"{policy_name}-{one}"}
        )
        for one in ("a", "b")
    ]
    return trainer, replicas


def generated_by(url: str) -> str:
    """The version that wrote a generation of the API at `url`."""
    answer = httpx.post(f"{url}/generate", json={"prompt": "The cat", "max_new_tokens": 2}, timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.json()["model_version"]
