from __future__ import annotations

import pytest

from trainer.evaluate import Figures
from trainer.gate import GateBounds, decide, verdict

BOUNDS = {"margin": 0.1, "max_kl": 0.5, "judge_tolerance": 0.1, "max_perplexity_ratio": 1.5}


def figures(
    reward: float,
    kl: float | None = None,
    judge: float | None = 0.5,
    perplexity: float | None = 20.0,
    lexicon: float | None = None,
) -> Figures:
    return Figures(
        reward_mean=reward,
        target_rate=0.5,
        kl=kl,
        samples=10,
        judge_target_rate=judge,
        perplexity=perplexity,
        lexicon_target_rate=lexicon,
    )


def test_candidate_passing_every_check_against_the_current_version_is_promoted_with_every_figure():
    decision = decide(
        figures(1.2, kl=0.1, judge=0.6, perplexity=25.0), figures(1.0), baseline_is_reference=False, **BOUNDS
    )
    assert decision.outcome == "promote_candidate" and decision.promotes
    assert "current version" in decision.reason and "judge" in decision.reason and "perplexity" in decision.reason
    assert decision.figures == {
        "candidate_reward_mean": 1.2,
        "candidate_target_rate": 0.5,
        "candidate_kl": 0.1,
        "candidate_judge_target_rate": 0.6,
        "candidate_perplexity": 25.0,
        "baseline_reward_mean": 1.0,
        "baseline_target_rate": 0.5,
        "baseline_judge_target_rate": 0.5,
        "baseline_perplexity": 20.0,
        "gate_reward_margin": 0.1,
        "gate_max_kl": 0.5,
        "gate_judge_tolerance": 0.1,
        "gate_max_perplexity_ratio": 1.5,
        "reward_hacking": 0.0,
    }


def test_candidate_gaining_less_than_the_margin_is_rejected():
    decision = decide(figures(1.05, kl=0.1), figures(1.0), baseline_is_reference=False, **BOUNDS)
    assert decision.outcome == "reject_candidate" and not decision.promotes
    assert "margin" in decision.reason and decision.figures["candidate_reward_mean"] == 1.05


def test_candidate_drifting_too_far_from_the_reference_is_rejected_even_with_more_reward():
    decision = decide(figures(9.0, kl=0.6), figures(1.0), baseline_is_reference=False, **BOUNDS)
    assert decision.outcome == "reject_candidate"
    assert "KL" in decision.reason and "margin" not in decision.reason


def test_reward_gain_the_independent_judge_does_not_see_is_rejected():
    decision = decide(figures(2.0, kl=0.1, judge=0.35), figures(1.0, judge=0.5), baseline_is_reference=False, **BOUNDS)
    assert decision.outcome == "reject_candidate"
    assert "judge's target rate 0.350 falls below" in decision.reason and "margin" not in decision.reason


def test_a_judge_drop_within_the_tolerance_passes():
    decision = decide(figures(2.0, kl=0.1, judge=0.45), figures(1.0, judge=0.5), baseline_is_reference=False, **BOUNDS)
    assert decision.outcome == "promote_candidate"


def test_candidate_whose_text_is_much_less_fluent_is_rejected():
    decision = decide(
        figures(2.0, kl=0.1, perplexity=31.0), figures(1.0, perplexity=20.0), baseline_is_reference=False, **BOUNDS
    )
    assert decision.outcome == "reject_candidate"
    assert "perplexity 31.00 exceeds 1.50 x the current version's 20.00" in decision.reason


def test_without_a_judge_the_judge_check_is_skipped_and_the_reason_says_why():
    decision = decide(
        figures(2.0, kl=0.1, judge=None),
        figures(1.0, judge=None),
        baseline_is_reference=False,
        judge_unavailable="too few labels",
        **BOUNDS,
    )
    assert decision.outcome == "promote_candidate"
    assert "independent judge not applied: too few labels" in decision.reason
    assert "candidate_judge_target_rate" not in decision.figures


def test_first_run_promotes_the_candidate_that_beats_the_sft_reference():
    decision = decide(figures(2.0, kl=0.1), figures(1.0), baseline_is_reference=True, **BOUNDS)
    assert decision.outcome == "promote_candidate"
    assert "SFT reference" in decision.reason


def test_first_run_falls_back_to_the_sft_policy_with_every_failed_check_in_the_reason():
    decision = decide(
        figures(0.5, kl=0.7, judge=0.1, perplexity=99.0), figures(1.0), baseline_is_reference=True, **BOUNDS
    )
    assert decision.outcome == "promote_reference" and decision.promotes
    assert "SFT policy is promoted" in decision.reason
    for check in ("KL", "margin", "judge", "perplexity"):
        assert check in decision.reason


def test_candidate_without_a_measured_kl_or_perplexity_is_refused():
    with pytest.raises(ValueError, match="KL"):
        decide(figures(2.0), figures(1.0), baseline_is_reference=False, **BOUNDS)
    with pytest.raises(ValueError, match="perplexity"):
        decide(figures(2.0, kl=0.1), figures(1.0, perplexity=None), baseline_is_reference=False, **BOUNDS)


GATE = GateBounds(**BOUNDS)


def test_a_passing_candidate_is_promoted_with_the_decisions_reason():
    passed = verdict(figures(1.2, kl=0.1), figures(1.0), baseline_is_reference=False, bounds=GATE, pinned=None)
    assert passed.status == "promoted" and not passed.stores_reference
    assert passed.reason == passed.decision.reason and passed.decision.outcome == "promote_candidate"
    assert passed.decision.figures["gate_reward_margin"] == 0.1


def test_a_passing_candidate_is_held_while_another_version_is_pinned():
    held = verdict(figures(1.2, kl=0.1), figures(1.0), baseline_is_reference=False, bounds=GATE, pinned="v0003-x")
    assert held.status == "candidate"
    assert held.reason == f"passed the gate ({held.decision.reason}); not promoted: v0003-x is pinned"


def test_a_failing_candidate_is_rejected_pinned_or_not():
    for pinned in (None, "v0003-x"):
        failed = verdict(figures(1.05, kl=0.1), figures(1.0), baseline_is_reference=False, bounds=GATE, pinned=pinned)
        assert failed.status == "rejected" and "margin" in failed.reason and not failed.stores_reference


def test_without_a_version_a_failing_candidate_gives_way_to_the_sft_policy():
    first = verdict(figures(0.5, kl=0.1), figures(1.0), baseline_is_reference=True, bounds=GATE, pinned=None)
    assert first.status == "promoted" and first.stores_reference and "SFT policy is promoted" in first.reason


def test_the_sft_fallback_is_held_too_while_a_version_is_pinned():
    held = verdict(figures(0.5, kl=0.1), figures(1.0), baseline_is_reference=True, bounds=GATE, pinned="v0001-x")
    assert held.status == "candidate" and held.stores_reference and held.reason.endswith("v0001-x is pinned")


def test_the_verdict_passes_the_judges_absence_on_to_the_reason():
    skipped = verdict(
        figures(2.0, kl=0.1, judge=None),
        figures(1.0, judge=None),
        baseline_is_reference=False,
        bounds=GATE,
        pinned=None,
        judge_unavailable="too few labels",
    )
    assert skipped.status == "promoted" and "independent judge not applied: too few labels" in skipped.reason


def test_a_drop_the_lexicon_judge_sees_rejects_even_when_the_other_judge_rises():
    decision = decide(
        figures(2.0, kl=0.1, judge=0.8, lexicon=0.3),
        figures(1.0, judge=0.5, lexicon=0.5),
        baseline_is_reference=False,
        **BOUNDS,
    )
    assert decision.outcome == "reject_candidate"
    assert "lexicon judge's target rate 0.300 falls below the current version's 0.500" in decision.reason
    assert "independent judge's target rate 0.800" not in decision.reason  # a passed check is not a failure's reason
    assert decision.figures["candidate_lexicon_target_rate"] == 0.3 and decision.figures["reward_hacking"] == 0.0


def test_a_first_version_passes_when_neither_judge_says_it_got_worse():
    decision = decide(
        figures(1.2, kl=0.1, judge=0.55, lexicon=0.48),
        figures(1.0, judge=0.5, lexicon=0.5),
        baseline_is_reference=True,
        **BOUNDS,
    )
    assert decision.outcome == "promote_candidate"
    assert "independent judge's target rate 0.550 >=" in decision.reason
    assert "lexicon judge's target rate 0.480 >= the SFT reference's 0.500 - 0.100" in decision.reason


def test_a_reward_rise_neither_judge_sees_is_flagged_as_reward_hacking_in_the_figures_and_the_reason():
    flagged = decide(
        figures(2.0, kl=0.1, judge=0.5, lexicon=0.45),
        figures(1.0, judge=0.5, lexicon=0.5),
        baseline_is_reference=True,
        **BOUNDS,
    )
    assert flagged.outcome == "promote_candidate" and flagged.figures["reward_hacking"] == 1.0
    assert "reward hacking: the reward rose by +1.0000 while no judge's target rate rose" in flagged.reason
    seen = decide(
        figures(2.0, kl=0.1, judge=0.5, lexicon=0.6),
        figures(1.0, judge=0.5, lexicon=0.5),
        baseline_is_reference=True,
        **BOUNDS,
    )
    assert seen.figures["reward_hacking"] == 0.0 and "reward hacking" not in seen.reason
    rejected = decide(
        figures(2.0, kl=0.9, judge=0.5, lexicon=0.5), figures(1.0, lexicon=0.5), baseline_is_reference=False, **BOUNDS
    )
    assert rejected.outcome == "reject_candidate" and "reward hacking" in rejected.reason


def test_a_lexicon_that_cannot_judge_the_target_is_skipped_and_the_reason_says_why():
    skipped = verdict(
        figures(2.0, kl=0.1, judge=0.6),
        figures(1.0, judge=0.5),
        baseline_is_reference=False,
        bounds=GATE,
        pinned=None,
        lexicon_unavailable="the lexicon judge knows positive and negative only, not 'neutral'",
    )
    assert skipped.status == "promoted"
    assert "lexicon judge not applied: the lexicon judge knows positive and negative only" in skipped.reason
