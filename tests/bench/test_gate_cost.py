"""The gate cost benchmark reads each target's gate and the control gap off the run's stamped progress events."""

from __future__ import annotations

import pytest
from gate_cost import gate_seconds

from streams.records import TrainingRunProgressed


def event(stage: str, message: str) -> TrainingRunProgressed:
    return TrainingRunProgressed(run_id="r", stage=stage, message=message)


def test_each_gate_runs_from_its_start_to_its_verdict_and_the_gap_from_the_last_verdict():
    events = [
        (1.0, event("ppo", "target=positive algorithm=ppo")),
        (2.0, event("gate", "target=positive")),
        (5.0, event("gate", "target=positive promote_candidate: better")),
        (6.0, event("ppo", "target=negative algorithm=ppo")),
        (7.5, event("gate", "target=negative")),
        (9.0, event("gate", "target=negative reject_candidate: worse")),
        (9.25, event("gate", "control_gap_reward=0.500")),
        (10.0, event("register", "target=positive")),
    ]
    seconds = gate_seconds(events, ["positive", "negative"])
    assert seconds == pytest.approx({"positive": 3.0, "negative": 1.5, "control_gap": 0.25})
    # One target: no control gap; a gate with no verdict (a failed run) is not counted.
    assert gate_seconds(events[:3], ["positive"]) == {"positive": 3.0}
    assert gate_seconds(events[:5], ["positive", "negative"]) == {"positive": 3.0}
