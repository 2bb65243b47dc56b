"""The one `ModelPromoted` builder: a version's manifest and directory become the announcement replicas serve."""

from __future__ import annotations

from pathlib import Path

from models.announcements import model_update
from models.manifest import Manifest


def test_the_announcement_carries_what_the_manifest_records():
    manifest = Manifest(
        name="expansion-policy-negative",
        version="v0003-1a2b3c4d",
        parent_version="v0002-1a2b3c4d",
        base_model="bootstrap",
        metrics={"candidate_reward_mean": 0.5},
    )
    update = model_update(Path("/models/expansion-policy-negative/v0003-1a2b3c4d"), manifest, "ab" * 32)
    assert (update.model_name, update.version, update.parent_version, update.metrics) == (
        "expansion-policy-negative",
        "v0003-1a2b3c4d",
        "v0002-1a2b3c4d",
        {"candidate_reward_mean": 0.5},
    )
    assert update.path == "/models/expansion-policy-negative/v0003-1a2b3c4d" and update.manifest_sha256 == "ab" * 32
    assert (update.action, update.reason) == ("promoted", "")


def test_an_operator_s_choice_is_announced_with_its_action_and_reason():
    manifest = Manifest(version="v0001-1a2b3c4d", base_model="bootstrap")
    update = model_update(Path("/v"), manifest, "00" * 32, action="pinned", reason="v2 repeats itself")
    assert (update.action, update.reason) == ("pinned", "v2 repeats itself")
