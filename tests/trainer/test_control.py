"""The control gap, the agreement of scorers and the reward-hacking rule (pure)."""

from __future__ import annotations

import pytest

from trainer import control


def test_a_perfect_control_gap_is_one_with_no_doubt():
    prompts = [f"p{i}" for i in range(8) for _ in range(4)]
    gap = control.control_gap([True] * 32, prompts, [False] * 32, prompts, seed=0)
    assert (gap.estimate, gap.low, gap.high) == (1.0, 1.0, 1.0)


def test_no_control_is_a_gap_around_zero_whose_interval_holds_zero():
    prompts = [f"p{i}" for i in range(16) for _ in range(4)]
    outputs = [i % 2 == 0 for i in range(64)]
    gap = control.control_gap(outputs, prompts, outputs, prompts, seed=1)
    assert gap.estimate == 0.0 and gap.low < 0 < gap.high


def test_the_gap_is_the_positive_rate_difference_and_its_interval_narrows_with_more_samples():
    few = [f"p{i}" for i in range(5) for _ in range(4)]
    positive = [True, True, True, False] * 5  # 0.75 positive, on every prompt
    negative = [True, False, False, False] * 5  # 0.25 positive
    small = control.control_gap(positive, few, negative, few, seed=2)
    many = [f"p{i}" for i in range(50) for _ in range(4)]
    large = control.control_gap(positive * 10, many, negative * 10, many, seed=2)
    assert small.estimate == pytest.approx(0.5) == large.estimate
    assert small.low < large.low <= 0.5 <= large.high < small.high
    assert large.as_metrics("gap") == {"gap": large.estimate, "gap_low": large.low, "gap_high": large.high}


def test_resampling_within_prompts_keeps_a_prompt_that_is_always_positive_positive():
    # Two prompts, each always on one side: every resample keeps each prompt's share, so no spread at all.
    prompts = ["a"] * 4 + ["b"] * 4
    gap = control.control_gap([True] * 4 + [False] * 4, prompts, [False] * 8, prompts, seed=0)
    assert (gap.low, gap.high) == (0.5, 0.5)


def test_a_gap_needs_outputs_and_their_prompts():
    with pytest.raises(ValueError, match="no samples"):
        control.control_gap([], [], [True], ["p"])
    with pytest.raises(ValueError, match="group"):
        control.control_gap([True, False], ["p"], [True], ["p"])


def test_agreement_is_the_share_on_the_same_side():
    assert control.agreement([True, True, False, False], [True, False, False, True]) == 0.5
    assert control.agreement([False, False], [False, False]) == 1.0
    with pytest.raises(ValueError, match="not the same outputs"):
        control.agreement([True], [True, False])
    with pytest.raises(ValueError, match="no outputs"):
        control.agreement([], [])


def test_a_reward_rise_no_judge_sees_is_reward_hacking():
    flagged, why = control.reward_hacking(0.4, {"judge": 0.0, "lexicon": -0.05}, margin=0.05)
    assert flagged and "reward hacking" in why and "judge +0.000" in why and "lexicon -0.050" in why


def test_one_judge_seeing_the_rise_clears_it():
    assert not control.reward_hacking(0.4, {"judge": 0.0, "lexicon": 0.02}, margin=0.05)[0]


def test_a_reward_gain_below_the_margin_is_not_a_rise():
    assert not control.reward_hacking(0.04, {"judge": -0.1, "lexicon": -0.1}, margin=0.05)[0]


def test_without_a_judge_nothing_is_flagged():
    flagged, why = control.reward_hacking(1.0, {"judge": None, "lexicon": None}, margin=0.05)
    assert not flagged and "not judged" in why
    assert control.reward_hacking(1.0, {"judge": None, "lexicon": -0.1}, margin=0.05)[0]
