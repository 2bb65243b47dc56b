"""Folding training-run and model-update events into what the dashboard and /metrics show."""

from __future__ import annotations

from api.ops.events import ModelVersions, TrainingRuns
from streams.records import ModelPromoted, TrainingRunProgressed


def test_runs_keep_their_curves_and_latest_stage() -> None:
    runs = TrainingRuns(max_runs=2)
    runs.add(TrainingRunProgressed(run_id="a", stage="sft", step=1, loss=2.0))
    runs.add(TrainingRunProgressed(run_id="a", stage="ppo", step=1, reward=0.1, kl=0.01))
    runs.add(TrainingRunProgressed(run_id="a", stage="gate"))
    runs.add(TrainingRunProgressed(run_id="a", stage="done", message="v0002 promoted"))
    runs.add(TrainingRunProgressed(run_id="b", stage="failed", message="boom"))
    (newest, older) = runs.recent()
    assert newest["run_id"] == "b" and newest["stage"] == "failed"
    assert older["stage"] == "done" and older["message"] == "v0002 promoted"
    assert [(p["stage"], p["reward"], p["kl"], p["loss"]) for p in older["points"]] == [
        ("sft", None, None, 2.0),
        ("ppo", 0.1, 0.01, None),
    ]
    assert runs.by_stage() == {"done": 1, "failed": 1}


def test_only_the_latest_runs_are_kept_but_every_run_is_counted() -> None:
    runs = TrainingRuns(max_runs=2)
    for run_id in "abc":
        runs.add(TrainingRunProgressed(run_id=run_id, stage="done"))
    assert [r["run_id"] for r in runs.recent()] == ["c", "b"]
    assert runs.by_stage() == {"done": 3}


def test_model_versions_keep_metrics_and_actions_in_order() -> None:
    versions = ModelVersions(max_versions=2)
    for version, action in (("v1", "promoted"), ("v2", "promoted"), ("v1", "rolled_back")):
        versions.add(
            ModelPromoted(
                version=version,
                uri="s3://m/expansion-policy/v1",
                manifest_sha256="0" * 64,
                metrics={"reward_mean": 0.5},
                action=action,
            )
        )
    assert [(v["version"], v["action"], v["metrics"]) for v in versions.all()] == [
        ("v2", "promoted", {"reward_mean": 0.5}),
        ("v1", "rolled_back", {"reward_mean": 0.5}),
    ]
