"""deploy/kubernetes/pod.py: the secrets file from a mounted Secret, and the group-membership check."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from ctrlgpt import secrets
from deploy.kubernetes import pod, render


def _mounted_secret(directory: Path, **values: str) -> Path:
    directory.mkdir()
    for key, value in values.items():
        (directory / key).write_text(value)
    return directory


def test_the_secrets_file_is_written_from_every_key_of_the_secret(tmp_path: Path) -> None:
    values = {key: f"value-of-{key}" for key in render.secret_keys()}
    mounted = _mounted_secret(tmp_path / "secret", **{key: value + "\n" for key, value in values.items()})
    target = tmp_path / "data" / "secrets.json"
    pod.write_secrets_file(pod.secrets_from_dir(mounted), target)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    loaded = secrets.load_or_create(target)  # as the services read it: unchanged, nothing generated
    assert loaded.model_dump() == {key: values[key] for key in secrets.Secrets.model_fields}
    assert set(json.loads(target.read_text())) == set(secrets.Secrets.model_fields)


def test_a_secret_without_a_key_is_refused(tmp_path: Path) -> None:
    mounted = _mounted_secret(tmp_path / "secret", doccano_password="x")
    with pytest.raises(FileNotFoundError, match="api_admin_key"):
        pod.secrets_from_dir(mounted)


def test_a_pod_is_healthy_only_while_a_member_connects_from_its_ip() -> None:
    assert pod.member_from(["/10.0.0.7", "/10.0.0.9"], "10.0.0.9")
    assert not pod.member_from(["/10.0.0.7"], "10.0.0.9")
    assert not pod.member_from([], "10.0.0.9")
    assert not pod.member_from(["/10.0.0.90"], "10.0.0.9")
