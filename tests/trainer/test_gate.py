from __future__ import annotations

import pytest

from trainer.evaluate import Figures
from trainer.gate import decide


def figures(reward: float, kl: float | None = None) -> Figures:
    return Figures(reward_mean=reward, target_rate=0.5, kl=kl, samples=10)


def test_candidate_beating_the_current_version_within_the_kl_bound_is_promoted():
    decision = decide(figures(1.2, kl=0.1), figures(1.0), baseline_is_reference=False, margin=0.1, max_kl=0.5)
    assert decision.outcome == "promote_candidate" and decision.promotes
    assert "current version" in decision.reason


def test_candidate_gaining_less_than_the_margin_is_rejected():
    decision = decide(figures(1.05, kl=0.1), figures(1.0), baseline_is_reference=False, margin=0.1, max_kl=0.5)
    assert decision.outcome == "reject_candidate" and not decision.promotes
    assert "margin" in decision.reason


def test_candidate_drifting_too_far_from_the_reference_is_rejected_even_with_more_reward():
    decision = decide(figures(9.0, kl=0.6), figures(1.0), baseline_is_reference=False, margin=0.1, max_kl=0.5)
    assert decision.outcome == "reject_candidate"
    assert "KL" in decision.reason and "margin" not in decision.reason


def test_first_run_promotes_the_candidate_that_beats_the_sft_reference():
    decision = decide(figures(2.0, kl=0.1), figures(1.0), baseline_is_reference=True, margin=0.1, max_kl=0.5)
    assert decision.outcome == "promote_candidate"
    assert "SFT reference" in decision.reason


def test_first_run_falls_back_to_the_sft_policy_with_the_reason():
    decision = decide(figures(0.5, kl=0.7), figures(1.0), baseline_is_reference=True, margin=0.1, max_kl=0.5)
    assert decision.outcome == "promote_reference" and decision.promotes
    assert "SFT policy is promoted" in decision.reason and "KL" in decision.reason and "margin" in decision.reason


def test_candidate_without_a_measured_kl_is_refused():
    with pytest.raises(ValueError, match="KL"):
        decide(figures(2.0), figures(1.0), baseline_is_reference=False, margin=0.1, max_kl=0.5)
