"""`ctrlgpt models ...`: the model registry from the command line.

    ctrlgpt models list                     every version: status, parent, key figures
    ctrlgpt models show V                   one version's manifest
    ctrlgpt models compare A B              metrics side by side, parent chains, files changed
    ctrlgpt models rollback V [--reason R]  an earlier promoted version becomes current again
    ctrlgpt models pin V [--reason R]       this version becomes current and stays (the gate waits)
    ctrlgpt models unpin                    the gate may promote again

Each target's policy has its own registry: `--target T` picks one (default: `target_sentiment`).
Add `--json` for machine-readable output. Rollback and pin are announced on the model-updates
topic, so every API replica swaps (`models.operations`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from ctrlgpt.settings import Settings
from models import operations
from models.manifest import ChecksumMismatch, Manifest
from models.registry import Change, Comparison, UnknownVersion, VersionConflict
from streams.bus import ServiceUnavailable

__all__ = ["ACTIONS", "format_comparison", "format_manifest", "format_versions", "main", "version_summary"]

# action -> how many version arguments it takes
ACTIONS = {"list": 0, "show": 1, "compare": 2, "rollback": 1, "pin": 1, "unpin": 0}
KEY_METRICS = ("candidate_reward_mean", "candidate_kl")


def version_summary(manifest: Manifest, current: str | None, pinned: str | None) -> dict:
    """A version as listed: its manifest without the file checksums, and whether it is current or pinned."""
    return {
        **manifest.model_dump(mode="json", exclude={"files"}),
        "files": len(manifest.files),
        "current": manifest.version == current,
        "pinned": manifest.version == pinned,
    }


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    return "\n".join(
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip() for row in [header, *rows]
    )


def format_versions(manifests: Sequence[Manifest], current: str | None, pinned: str | None) -> str:
    if not manifests:
        return "no versions registered yet"
    rows = [
        [
            ("*" if m.version == current else "") + ("P" if m.version == pinned else ""),
            m.version,
            m.status,
            m.parent_version or "-",
            m.created_at.strftime("%Y-%m-%d %H:%M"),
            *(_figure(m.metrics.get(key)) for key in KEY_METRICS),
            m.status_reason[:60],
        ]
        for m in manifests
    ]
    legend = "* current, P pinned"
    return _table(["", "VERSION", "STATUS", "PARENT", "CREATED (UTC)", "REWARD", "KL", "REASON"], rows) + "\n" + legend


def format_manifest(manifest: Manifest, current: str | None, pinned: str | None) -> str:
    facts = [
        (
            "version",
            manifest.version
            + (" (current)" if manifest.version == current else "")
            + (" (pinned)" if manifest.version == pinned else ""),
        ),
        ("name", manifest.name),
        ("status", f"{manifest.status}: {manifest.status_reason}" if manifest.status_reason else manifest.status),
        ("parent", manifest.parent_version or "-"),
        ("created", manifest.created_at.isoformat()),
        ("base model", manifest.base_model),
        ("target", manifest.target_sentiment),
        ("label offsets", ", ".join(f"p{p}:{o}" for p, o in sorted(manifest.label_offsets.items())) or "-"),
        ("files", str(len(manifest.files))),
    ]
    lines = [f"{name:<14} {value}" for name, value in facts]
    lines += ["metrics"] + [f"  {name:<28} {_figure(value)}" for name, value in sorted(manifest.metrics.items())]
    return "\n".join(lines)


def format_comparison(comparison: Comparison) -> str:
    a, b = comparison.a.version, comparison.b.version
    rows = [
        [name, _figure(left), _figure(right), _figure(right - left) if left is not None and right is not None else "-"]
        for name, (left, right) in comparison.metrics.items()
    ]
    lines = [
        _table(["METRIC", a, b, "B - A"], rows) if rows else "no metrics",
        "",
        f"lineage {a}: {' <- '.join(comparison.lineage_a)}",
        f"lineage {b}: {' <- '.join(comparison.lineage_b)}",
        f"common ancestor: {comparison.common_ancestor or '-'}",
        "",
        f"files: {len(comparison.files_changed)} changed, {len(comparison.files_added)} added, "
        f"{len(comparison.files_removed)} removed, {comparison.files_same} the same",
        *(f"  ~ {name}" for name in comparison.files_changed),
        *(f"  + {name}" for name in comparison.files_added),
        *(f"  - {name}" for name in comparison.files_removed),
    ]
    return "\n".join(lines)


def comparison_json(comparison: Comparison) -> dict:
    return {
        "a": comparison.a.version,
        "b": comparison.b.version,
        "metrics": {name: {"a": left, "b": right} for name, (left, right) in comparison.metrics.items()},
        "lineage_a": comparison.lineage_a,
        "lineage_b": comparison.lineage_b,
        "common_ancestor": comparison.common_ancestor,
        "files_changed": comparison.files_changed,
        "files_added": comparison.files_added,
        "files_removed": comparison.files_removed,
        "files_same": comparison.files_same,
    }


def change_json(change: Change) -> dict:
    return {"action": change.action, "version": change.version, "previous": change.previous, "reason": change.reason}


def _run(settings: Settings, action: str, versions: list[str], reason: str, target: str | None) -> tuple[object, str]:
    """(what --json prints, what a person reads) for one action."""
    registry = operations.registry_for(settings, target)
    if action in ("list", "show"):
        current, pinned = registry.current(), registry.pinned()
        if action == "list":
            manifests = registry.manifests()
            return [version_summary(m, current, pinned) for m in manifests], format_versions(manifests, current, pinned)
        shown = registry.manifest(versions[0])
        return shown.model_dump(mode="json"), format_manifest(shown, current, pinned)
    if action == "compare":
        comparison = registry.compare(*versions)
        return comparison_json(comparison), format_comparison(comparison)
    if action == "unpin":
        was = registry.unpin()
        return {"unpinned": was}, f"unpinned {was}" if was else "no version was pinned"
    change = (operations.rollback if action == "rollback" else operations.pin)(
        settings, versions[0], reason, target=target
    )
    text = f"{change.version} is current ({change.action}"
    text += f", was {change.previous})" if change.previous else ")"
    return change_json(change), text + "; announced to every API replica"


def main(settings: Settings, args: argparse.Namespace) -> int:
    wanted = ACTIONS[args.action]
    if len(args.versions) != wanted:
        print(f"ctrlgpt models {args.action}: takes {wanted} version(s), got {len(args.versions)}", file=sys.stderr)
        return 2
    try:
        as_json, text = _run(settings, args.action, args.versions, args.reason, args.target)
    except (UnknownVersion, VersionConflict, ChecksumMismatch, operations.UnknownTarget) as exc:
        print(f"ctrlgpt models {args.action}: {exc}", file=sys.stderr)
        return 1
    except ServiceUnavailable as exc:
        print(
            f"ctrlgpt models {args.action}: the registry changed but the announcement failed ({exc}); "
            "run the same command again",
            file=sys.stderr,
        )
        return 1
    print(json.dumps(as_json, indent=2) if args.json else text)
    return 0
