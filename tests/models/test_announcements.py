"""The one `ModelPromoted` builder: a version's manifest and place in the store become the signed announcement."""

from __future__ import annotations

import pytest

from ctrlgpt.settings import Settings
from models.announcements import canonical, is_authentic, model_update, sign, signing_key, unannounced
from models.manifest import Manifest

KEY = b"shared by the trainer and the replicas"
URI = "s3://models/ctrlgpt/expansion-policy-negative/v0003-1a2b3c4d"


def _manifest() -> Manifest:
    return Manifest(
        name="expansion-policy-negative",
        version="v0003-1a2b3c4d",
        parent_version="v0002-1a2b3c4d",
        base_model="bootstrap",
        metrics={"candidate_reward_mean": 0.5},
        files={"policy/model.safetensors": "cd" * 32},
    )


def test_the_announcement_carries_what_the_manifest_records():
    update = model_update(URI, _manifest(), "ab" * 32, key=KEY)
    assert (update.model_name, update.version, update.parent_version, update.metrics) == (
        "expansion-policy-negative",
        "v0003-1a2b3c4d",
        "v0002-1a2b3c4d",
        {"candidate_reward_mean": 0.5},
    )
    assert (update.uri, update.manifest_sha256) == (URI, "ab" * 32)
    assert update.files == {"policy/model.safetensors": "cd" * 32}
    assert (update.action, update.reason) == ("promoted", "")


def test_an_operator_s_choice_is_announced_with_its_action_and_reason():
    update = model_update(URI, _manifest(), "00" * 32, key=KEY, action="pinned", reason="v2 repeats itself")
    assert (update.action, update.reason) == ("pinned", "v2 repeats itself")


def test_the_signature_verifies_with_the_key_only():
    update = model_update(URI, _manifest(), "ab" * 32, key=KEY)
    assert update.signature and is_authentic(update, KEY)
    assert not is_authentic(update, b"another key")
    assert not is_authentic(update.model_copy(update={"signature": ""}), KEY)


@pytest.mark.parametrize(
    "field, value",
    [
        ("uri", "file:///tmp/elsewhere/v0003-1a2b3c4d"),
        ("version", "v0004-1a2b3c4d"),
        ("manifest_sha256", "ef" * 32),
        ("files", {"policy/model.safetensors": "00" * 32}),
        ("action", "pinned"),
    ],
)
def test_any_field_changed_after_signing_fails_verification(field, value):
    update = model_update(URI, _manifest(), "ab" * 32, key=KEY)
    assert not is_authentic(update.model_copy(update={field: value}), KEY)


def test_the_signed_bytes_are_canonical_json_without_the_signature():
    update = sign(model_update(URI, _manifest(), "ab" * 32, key=KEY), KEY)
    text = canonical(update).decode()
    assert '"signature"' not in text and ", " not in text
    assert text.index('"action"') < text.index('"version"')  # sorted keys: any implementation signs the same bytes


def test_the_key_comes_from_the_setting_else_the_secrets_file(tmp_path):
    from_file = signing_key(Settings(data_dir=tmp_path))
    assert from_file and from_file == signing_key(Settings(data_dir=tmp_path))  # generated once, kept
    assert signing_key(Settings(data_dir=tmp_path, model_signing_key="given")) == b"given"


def test_a_name_whose_last_record_is_missing_forged_or_another_version_is_unannounced():
    current = _manifest()
    announced = model_update(URI, current, "ab" * 32, key=KEY)
    older = model_update(URI, current.model_copy(update={"version": "v0002-1a2b3c4d"}), "ab" * 32, key=KEY)
    forged = announced.model_copy(update={"uri": "s3://elsewhere/x"})  # the signature no longer matches
    name, version = current.name, current.version
    assert unannounced({name: version}, [older, announced], KEY) == []
    assert unannounced({name: version}, [], KEY) == [name]
    assert unannounced({name: version}, [announced, older], KEY) == [name]  # the last record wins, as on a replica
    assert unannounced({name: version}, [announced, forged], KEY) == [name]
    assert unannounced({name: version}, [announced], b"another key") == [name]
    assert unannounced({name: version, "expansion-policy": "v0001-0a0a0a0a"}, [announced], KEY) == ["expansion-policy"]
