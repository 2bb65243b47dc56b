"""Registry operations on disk: status, rollback, pin, compare, and the CLI's rendering of them."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from registry_versions import add_version

from models import cli as models_cli
from models import manifest, operations
from models.announcements import is_authentic, signing_key
from models.registry import Registry, UnknownVersion, VersionConflict, version_id


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "models")


@pytest.fixture
def two_promoted(registry: Registry) -> tuple[str, str]:
    first = add_version(registry, 1)
    registry.promote(first, "first")
    second = add_version(registry, 2, parent=first)
    registry.promote(second, "better")
    return first, second


def tamper(registry: Registry, version: str) -> None:
    weights = registry.path(version) / "policy" / "model.safetensors"
    weights.write_bytes(weights.read_bytes() + b"!")


def test_rollback_moves_current_back_and_marks_the_version_left(registry, two_promoted):
    first, second = two_promoted
    change = registry.rollback(first, "second writes nonsense")
    assert registry.current() == first
    assert (change.action, change.version, change.previous) == ("rolled_back", first, second)
    assert change.manifest_sha256 == manifest.sha256_of(registry.path(first) / manifest.MANIFEST)
    left = manifest.verify(registry.path(second))
    assert left.status == "rolled_back" and "second writes nonsense" in left.status_reason
    assert manifest.verify(registry.path(first)).status == "promoted"


def test_rollback_to_the_current_version_again_is_a_safe_retry(registry, two_promoted):
    first, second = two_promoted
    registry.rollback(first, "bad")
    again = registry.rollback(first, "bad")
    assert again.previous is None and registry.current() == first
    assert registry.manifest(second).status == "rolled_back"


def test_rollback_refuses_unknown_unpromoted_newer_versions_and_an_empty_registry(registry):
    with pytest.raises(VersionConflict, match="nothing to roll back"):
        registry.rollback(add_version(registry, 1), "why")
    first = registry.versions()[0]
    rejected = add_version(registry, 2)
    registry.reject(rejected, "worse")
    current = add_version(registry, 3)
    registry.promote(current, "ok")
    newer = add_version(registry, 4)
    registry.promote(newer, "ok")
    registry.rollback(current, "newer is bad")
    with pytest.raises(VersionConflict, match="rejected"):
        registry.rollback(rejected, "why")
    with pytest.raises(VersionConflict, match="candidate"):
        registry.rollback(first, "why")
    with pytest.raises(VersionConflict, match="newer"):
        registry.rollback(newer, "why")
    for unknown in (version_id(9, "nope"), "../elsewhere"):
        with pytest.raises(UnknownVersion):
            registry.rollback(unknown, "why")
    assert registry.current() == current


def test_rollback_away_from_a_broken_version_keeps_its_recorded_checksums(registry, two_promoted):
    first, second = two_promoted
    tamper(registry, second)
    registry.rollback(first, "weights corrupted")
    assert registry.manifest(second).status == "rolled_back"
    with pytest.raises(manifest.ChecksumMismatch):
        manifest.verify(registry.path(second))  # the status change did not bless the changed file


def test_rollback_to_a_broken_version_changes_nothing(registry, two_promoted):
    first, second = two_promoted
    tamper(registry, first)
    with pytest.raises(manifest.ChecksumMismatch):
        registry.rollback(first, "why")
    assert registry.current() == second and registry.manifest(second).status == "promoted"


def test_a_pin_holds_until_unpinned(registry, two_promoted):
    _first, second = two_promoted
    rejected = add_version(registry, 3, parent=second)
    registry.reject(rejected, "worse")
    change = registry.pin(rejected, "operator knows better")
    assert (change.action, change.previous) == ("pinned", second)
    assert registry.current() == rejected and registry.pinned() == rejected
    assert registry.manifest(rejected).status == "promoted"
    candidate = add_version(registry, 4, parent=rejected)
    with pytest.raises(VersionConflict, match="pinned"):
        registry.promote(candidate, "passed the gate")
    registry.hold(candidate, "passed the gate, pinned")
    assert registry.manifest(candidate).status == "candidate" and registry.current() == rejected
    assert registry.unpin() == rejected and registry.pinned() is None
    registry.promote(candidate, "passed the gate")
    assert registry.current() == candidate


def test_compare_puts_metrics_lineage_and_files_side_by_side(registry, two_promoted):
    first, second = two_promoted
    third = add_version(registry, 3, parent=second, weights=b"other", metrics={"candidate_reward_mean": 3.0, "kl": 0.1})
    comparison = registry.compare(first, third)
    assert comparison.metrics == {"candidate_reward_mean": (1.0, 3.0), "kl": (None, 0.1)}
    assert comparison.lineage_a == [first] and comparison.lineage_b == [third, second, first]
    assert comparison.common_ancestor == first
    assert comparison.files_changed == ["policy/model.safetensors"] and comparison.files_same == 1
    assert comparison.files_added == comparison.files_removed == []
    text = models_cli.format_comparison(comparison)
    assert third in text and "policy/model.safetensors" in text and "2" in text  # the reward's gain


def test_listing_marks_current_and_pinned(registry, two_promoted):
    first, second = two_promoted
    registry.pin(first, "hold")
    text = models_cli.format_versions(registry.manifests(), registry.current(), registry.pinned())
    first_line = next(line for line in text.splitlines() if first in line)
    second_line = next(line for line in text.splitlines() if second in line)
    assert first_line.startswith("*P") and not second_line.startswith("*")
    assert models_cli.format_versions([], None, None) == "no versions registered yet"


def test_announcement_carries_the_version_and_the_operator_s_reason(settings, tmp_path):
    local = settings.model_copy(update={"data_dir": tmp_path, "model_store": ""})
    registry = operations.registry_for(local)
    first = add_version(registry, 1, name=registry.root.name)
    registry.promote(first, "first")
    registry.promote(add_version(registry, 2, parent=first, name=registry.root.name), "second")
    update = operations.announcement(local, registry.rollback(first, "regression"))
    assert (update.version, update.action, update.reason, update.model_name) == (
        first,
        "rolled_back",
        "regression",
        registry.root.name,
    )
    assert update.uri == f"{registry.path(first).resolve().as_uri()}" and update.metrics == {
        "candidate_reward_mean": 1.0
    }
    assert update.files == registry.manifest(first).files and is_authentic(update, signing_key(local))


def cli(settings, capsys, action: str, *versions: str, as_json: bool = False, target=None) -> tuple[int, str, str]:
    code = models_cli.main(
        settings, argparse.Namespace(action=action, versions=list(versions), reason="", json=as_json, target=target)
    )
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_lists_shows_compares_and_reports_errors(settings, tmp_path, capsys):
    local = settings.model_copy(update={"data_dir": tmp_path})
    registry = operations.registry_for(local)
    first = add_version(registry, 1)
    registry.promote(first, "first")
    second = add_version(registry, 2, parent=first)

    code, out, _ = cli(local, capsys, "list", as_json=True)
    listed = json.loads(out)
    assert code == 0 and [v["version"] for v in listed] == [first, second]
    assert listed[0]["current"] and listed[1]["status"] == "candidate" and listed[1]["label_offsets"] == {"0": 20}
    code, out, _ = cli(local, capsys, "show", second)
    assert code == 0 and f"parent         {first}" in out
    code, out, _ = cli(local, capsys, "compare", first, second, as_json=True)
    assert code == 0 and json.loads(out)["lineage_b"] == [second, first]
    assert cli(local, capsys, "show")[0] == 2
    code, _, err = cli(local, capsys, "rollback", second)
    assert code == 1 and "newer" in err
    code, _, err = cli(local, capsys, "show", version_id(7, "x"))
    assert code == 1 and "no version" in err
    code, _, err = cli(local, capsys, "list", target="sarcastic")
    assert code == 1 and "no policy is trained for target 'sarcastic'" in err
