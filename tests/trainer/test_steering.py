"""The per-target stages' own logic: which baseline the gate judges against, what a version records."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from trainer import data
from trainer.evaluate import Evaluation, Figures, Sample
from trainer.gate import GateBounds
from trainer.steering import Candidate, Measured, control_figures

BOUNDS = GateBounds(margin=0.1, max_kl=0.5, judge_tolerance=0.1, max_perplexity_ratio=1.5)


def figures(reward: float, kl: float | None = None) -> Figures:
    return Figures(reward_mean=reward, target_rate=0.5, kl=kl, samples=4, judge_target_rate=None, perplexity=10.0)


def measured(current: Figures | None) -> Measured:
    return Measured(
        candidate=figures(1.2, kl=0.1),
        reference=figures(1.0),
        current=current,
        threshold=0.3,
        judge_labels=0,
        judge_unavailable="too few labels",
    )


def test_the_current_version_is_the_baseline_when_there_is_one():
    verdict = measured(figures(1.15)).verdict(BOUNDS, pinned=None)
    assert verdict.status == "rejected" and "the current version's 1.1500" in verdict.reason


def test_without_a_current_version_the_sft_reference_is_the_baseline():
    verdict = measured(None).verdict(BOUNDS, pinned=None)
    assert verdict.status == "promoted" and "the SFT reference's 1.0000" in verdict.reason
    assert "independent judge not applied: too few labels" in verdict.reason


def test_a_version_records_the_decisions_the_references_and_the_current_figures():
    with_current = measured(figures(0.9))
    recorded = with_current.figures(with_current.verdict(BOUNDS, pinned=None).decision)
    assert recorded["target_threshold"] == 0.3 and recorded["judge_labels"] == 0.0
    assert recorded["candidate_reward_mean"] == 1.2 and recorded["baseline_reward_mean"] == 0.9
    assert recorded["reference_reward_mean"] == 1.0 and recorded["current_reward_mean"] == 0.9
    first = measured(None)
    assert not any(key.startswith("current_") for key in first.figures(first.verdict(BOUNDS, pinned=None).decision))


def test_a_version_records_the_judges_accuracy_when_there_is_a_judge():
    judged = Measured(
        candidate=figures(1.2, kl=0.1),
        reference=figures(1.0),
        current=None,
        threshold=0.3,
        judge_labels=20,
        judge_unavailable=None,
        judge_accuracy=0.85,
    )
    recorded = judged.figures(judged.verdict(BOUNDS, pinned=None).decision)
    assert recorded["judge_accuracy"] == 0.85 and recorded["judge_labels"] == 20.0
    unjudged = measured(None)
    assert "judge_accuracy" not in unjudged.figures(unjudged.verdict(BOUNDS, pinned=None).decision)


def candidate_toward(target: str, responses: list[str], rewards: list[float]) -> Candidate:
    samples = [Sample(f"prompt {i % 2}\n\n", text, [1], [2], True) for i, text in enumerate(responses)]
    evaluation = Evaluation(figures(0.0), samples, rewards)
    judged = Measured(figures(0.0, kl=0.0), figures(0.0), None, 0.0, 0, "no labels", candidate_evaluation=evaluation)
    return Candidate(target, None, None, None, None, None, judged, None, {})


def test_the_control_gap_is_measured_by_the_reward_model_and_the_lexicon_when_both_targets_ran():
    config = SimpleNamespace(judge_encoder=None, device=torch.device("cpu"), seed=0)
    training = data.build([], [], "positive")  # no labels: the MiniLM judge cannot be fit, the others measure
    happy, grim = "A wonderful, lovely day.", "An awful, miserable mess."
    toward_positive = candidate_toward("positive", [happy, happy, happy, grim], [1.0, 1.0, 1.0, -1.0])
    # The negative policy's reward model is the positive one turned around: a reward above 0 is negative text.
    toward_negative = candidate_toward("negative", [grim, grim, grim, happy], [1.0, 1.0, -1.0, 1.0])
    gap = control_figures(config, training, [toward_positive, toward_negative])
    assert gap["control_gap_lexicon"] == pytest.approx(0.75 - 0.25)
    assert gap["control_gap_reward"] == pytest.approx(0.75 - 0.25)
    assert gap["control_gap_lexicon_low"] <= 0.5 <= gap["control_gap_lexicon_high"]
    assert not any(key.startswith("control_gap_judge") for key in gap)
    assert control_figures(config, training, [toward_positive]) == {}
