"""The learning benchmark: its labelled set, its arithmetic, and a smoke run with tiny sizes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from learning import (
    Difference,
    PerSample,
    Timing,
    across_seeds,
    bootstrap_difference,
    changes,
    comparison,
    confirmed,
    demo_records,
    over_seeds,
    overhead,
    parse_args,
    per_sample,
    run,
    same_run,
    step_durations,
)

from deploy.demo_site import load_articles
from trainer import evaluate


def test_the_labelled_set_is_the_demo_site_with_one_label_per_paragraph():
    articles = load_articles()
    pages, labels = demo_records(articles)
    assert len(pages) == len(articles) == 30 and len({page.url for page in pages}) == 30
    assert len(labels) == sum(len(article.paragraphs) for article in articles)
    by_url = {page.url: article for page, article in zip(pages, articles, strict=True)}
    for label in labels:
        article = by_url[label.page_url]
        assert label.label.sentiment == article.sentiment and label.label.text in article.paragraphs
    assert {label.label.sentiment for label in labels} == {"positive", "negative"}


def test_step_durations_and_overhead():
    assert step_durations([1.0, 1.5, 3.0]) == [0.5, 1.5]
    assert overhead(1.1, 1.0) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="no training step"):
        step_durations([1.0])


def test_runs_are_the_same_run_when_every_update_rolled_out_the_same_rewards():
    def timing(*scores: float) -> Timing:
        return Timing(1.0, [0.5], [0.5], list(scores))

    assert same_run([timing(0.1, 2.0)], [timing(0.1, 2.0000001), timing(0.1, 2.0)])
    assert not same_run([timing(0.1, 2.0)], [timing(0.1, 2.5)])
    assert not same_run([timing(0.1, 2.0)], [timing(0.1)])
    assert not same_run([timing()], [timing()])


def test_no_change_gives_an_interval_around_zero_and_a_clear_change_one_above_it():
    noisy = [0.0, 1.0] * 20
    same = bootstrap_difference(noisy, noisy, ["a"] * 40, ["a"] * 40)
    assert same.estimate == 0 and same.low < 0 < same.high and not same.up
    risen = bootstrap_difference([0.0] * 30 + [1.0] * 10, [0.0] * 10 + [1.0] * 30, ["a"] * 40, ["a"] * 40)
    assert risen.estimate == pytest.approx(0.5) and 0 < risen.low < 0.5 < risen.high and risen.up


def test_samples_are_resampled_within_their_prompt():
    # Each prompt's samples agree: resampled within their prompt, every resample has the same mean.
    before = [0.0] * 10 + [1.0] * 30
    prompts = ["a"] * 10 + ["b"] * 30
    after = [0.5] * 10 + [1.0] * 30
    assert bootstrap_difference(before, after, prompts, prompts) == Difference(0.125, 0.125, 0.125)


def test_more_samples_give_a_narrower_interval():
    rng = np.random.default_rng(1)

    def coin_flips(size: int) -> Difference:
        before, after = (list(rng.integers(0, 2, size).astype(float)) for _ in range(2))
        return bootstrap_difference(before, after, ["a"] * size, ["a"] * size)

    few, many = coin_flips(32), coin_flips(512)
    assert many.high - many.low < (few.high - few.low) / 2


def per_prompt(prompts: list[str], values: list[float]) -> PerSample:
    return PerSample(prompts, values, values, values, values)


def test_the_rise_is_confirmed_only_when_the_reward_models_and_the_judges_rates_both_rise():
    prompts = ["a"] * 40
    before, after = [0.0] * 30 + [1.0] * 10, [0.0] * 10 + [1.0] * 30
    assert confirmed(changes(per_prompt(prompts, before), per_prompt(prompts, after), seed=0))
    judge_flat = PerSample(prompts, after, after, before, before)
    differences = changes(per_prompt(prompts, before), judge_flat, seed=0)
    assert differences["reward_target"].up and not differences["judge_target"].up and not confirmed(differences)
    unjudged = PerSample(prompts, before, before, None, None)
    assert set(changes(unjudged, unjudged, seed=0)) == {"rewards", "reward_target"}
    assert not confirmed(changes(unjudged, PerSample(prompts, after, after, None, None), seed=0))


def test_per_sample_figures_are_on_the_target_side_strictly_above_the_boundaries():
    samples = [evaluate.Sample("p\n\n", text, [1], [2], True) for text in "abc"]
    evaluation = evaluate.Evaluation(
        evaluate.summarise([0.0, 1.0, 2.0], 1.0), samples, [0.0, 1.0, 2.0], [0.2, 0.5, 0.9]
    )
    figures = per_sample(evaluation, threshold=1.0, judge_boundary=0.5)
    assert figures.reward_target == [0.0, 0.0, 1.0] and figures.judge_target == [0.0, 0.0, 1.0]
    assert figures.judge_probability == [0.2, 0.5, 0.9] and figures.prompts == ["p\n\n"] * 3


def test_a_tiny_run_measures_every_figure(capsys):
    args = parse_args(
        ["--articles", "12", "--episodes", "8", "--sft-epochs", "1", "--reward-epochs", "1"]
        + ["--samples-per-prompt", "1", "--repeats", "1", "--layers", "1", "--width", "32", "--vocab", "400"]
        + ["--algorithms", "ppo,rloo", "--target-sft-epochs", "1"]
    )
    report = run(args)
    for when in ("before", "ppo_after"):
        for name in ("reward_mean", "target_rate", "judge_target_rate", "perplexity"):
            assert math.isfinite(report.figures[f"{when}_{name}"])
        assert 0 <= report.figures[f"{when}_judge_target_rate"] <= 1
        assert 0 <= report.figures[f"{when}_judge_target_mean"] <= 1
        for name in ("lexicon_target_rate", "reward_judge_agreement", "reward_lexicon_agreement", "judges_agreement"):
            assert 0 <= report.figures[f"{when}_{name}"] <= 1
    assert 0 <= report.figures["judge_accuracy"] <= 1
    assert "ppo_after_kl" in report.figures and "before_kl" not in report.figures
    for name in ("rewards", "reward_target", "judge_target", "judge_probability"):
        assert report.figures[f"ppo_change_{name}_low"] <= report.figures[f"ppo_change_{name}_high"]
    assert report.figures["ppo_change_reward_target"] == pytest.approx(
        report.figures["ppo_after_target_rate"] - report.figures["before_target_rate"]
    )
    assert report.figures["ppo_confirmed"] in (0.0, 1.0)
    for algorithm in ("ppo", "rloo"):
        assert report.figures[f"{algorithm}_update_s"] > 0
        assert report.figures[f"{algorithm}_run_s"] >= report.figures[f"{algorithm}_update_s"]
        assert math.isfinite(report.figures[f"{algorithm}_after_judge_target_rate"])
    # Both targets by default: each algorithm's policy toward negative, and the control gap by every scorer.
    for when in ("before_toward_negative", "ppo_toward_negative", "rloo_toward_negative"):
        for name in ("judge_target_rate", "lexicon_target_rate", "perplexity"):
            assert math.isfinite(report.figures[f"{when}_{name}"])
    for algorithm in ("ppo", "rloo"):
        assert math.isfinite(report.figures[f"{algorithm}_toward_negative_kl"])
        for name in ("reward", "judge", "lexicon"):
            low, gap, high = (report.figures[f"{algorithm}_control_gap_{name}{end}"] for end in ("_low", "", "_high"))
            assert -1 <= low <= gap <= high <= 1
    rows = comparison(report.figures, ["ppo", "rloo"], "negative").splitlines()[2:]
    assert [row.split(" | ")[0] for row in rows] == ["| ppo", "| rloo"]
    for algorithm, row in zip(("ppo", "rloo"), rows, strict=True):
        judge_gap, lexicon_gap = row.split(" | ")[1:3]
        assert judge_gap.startswith(f"{report.figures[f'{algorithm}_control_gap_judge']:+.3f} [")
        assert lexicon_gap.startswith(f"{report.figures[f'{algorithm}_control_gap_lexicon']:+.3f} [")
    # Each target's SFT policy alone, before RL: its figures and the control gap RL is read against
    assert "targets' SFT" in dict(report.rows)
    for target in ("positive", "negative"):
        assert math.isfinite(report.figures[f"target-sft_toward_{target}_judge_target_rate"])
    for name in ("reward", "judge", "lexicon"):
        low, gap, high = (report.figures[f"target-sft_control_gap_{name}{end}"] for end in ("_low", "", "_high"))
        assert -1 <= low <= gap <= high <= 1
    assert report.figures["ours_step_s"] > 0 and report.figures["bare_step_s"] > 0
    assert math.isfinite(report.figures["step_overhead"])
    assert "| time per PPO update, bare trl PPOTrainer" in report.table()
    assert ("same run (equal rewards at every update)", "yes") in report.rows
    out = capsys.readouterr().out
    assert "PPO ours #1" in out and "RLOO ours #1" in out and "RLOO bare" not in out


def after_figures(prefix: str, rate: float, perplexity: float) -> dict[str, float]:
    return {
        f"{prefix}_target_rate": rate,
        f"{prefix}_judge_target_rate": rate,
        f"{prefix}_kl": 0.125,
        f"{prefix}_perplexity": perplexity,
        f"{prefix}_reward_judge_agreement": 0.875,
    }


def test_the_algorithms_are_compared_row_by_row():
    figures = {"before_target_rate": 0.25, "before_judge_target_rate": 0.5, "before_perplexity": 10.0}
    for algorithm, after in (("ppo", 0.75), ("grpo", 0.5)):
        figures |= after_figures(f"{algorithm}_after", after, 12.0)
        figures |= {f"{algorithm}_update_s": 1.5, f"{algorithm}_run_s": 30.0}
    figures |= {"grpo_control_gap_judge": 0.25, "grpo_control_gap_judge_low": 0.125, "grpo_control_gap_judge_high": 0.5}
    header, rule, ppo, grpo = comparison(figures, ["ppo", "grpo"]).splitlines()
    assert "control gap, MiniLM judge" in header and "control gap, lexicon" in header
    assert rule.count("---") == header.count("|") - 1
    assert ppo == "| ppo | - | - | 0.250 -> 0.750 | 0.500 -> 0.750 | - | 0.1250 | 1.200 | 0.875 | 1.50 | 30.0 |"
    assert grpo.startswith("| grpo | +0.250 [+0.125, +0.500] | - | 0.250 -> 0.500 |")


def test_with_two_targets_each_cell_gives_the_main_target_then_the_other_and_the_gaps_both_judges():
    figures = {"before_target_rate": 0.25, "before_judge_target_rate": 0.5, "before_perplexity": 10.0}
    figures |= {"before_toward_negative_target_rate": 0.5, "before_toward_negative_judge_target_rate": 0.375}
    figures |= {"before_toward_negative_perplexity": 10.0}
    figures |= after_figures("ppo_after", 0.75, 12.0) | after_figures("ppo_toward_negative", 0.625, 15.0)
    figures |= {"ppo_update_s": 1.5, "ppo_run_s": 30.0}
    for name, gap in (("judge", 0.25), ("lexicon", 0.5)):
        figures |= {
            f"ppo_control_gap_{name}": gap,
            f"ppo_control_gap_{name}_low": 0.0,
            f"ppo_control_gap_{name}_high": 1.0,
        }
    row = comparison(figures, ["ppo"], "negative").splitlines()[2]
    assert row == (
        "| ppo | +0.250 [+0.000, +1.000] | +0.500 [+0.000, +1.000] | 0.250 -> 0.750; 0.500 -> 0.625 "
        "| 0.500 -> 0.750; 0.375 -> 0.625 | -; - | 0.1250; 0.1250 | 1.200; 1.500 | 0.875; 0.875 | 1.50 | 30.0 |"
    )


def test_both_targets_by_default_and_one_target_on_request():
    assert parse_args([]).targets == ["positive", "negative"]
    assert parse_args(["--targets", "positive"]).targets == ["positive"]
    assert parse_args(["--target", "negative"]).targets == ["negative", "positive"]


def test_seeds_are_parsed_and_the_first_is_the_run_seed(capsys):
    assert parse_args([]).seeds == [0, 1, 2]
    args = parse_args(["--seeds", "4, 7"])
    assert (args.seeds, args.seed) == ([4, 7], 4)
    with pytest.raises(SystemExit):
        parse_args(["--seeds", "one"])
    assert "--seeds" in capsys.readouterr().err


def test_gaps_over_seeds_are_a_mean_with_a_t_interval_and_each_seed_is_listed():
    assert over_seeds([0.5]) == "+0.500"
    # mean 0.4, sd 0.1, n 3: t(0.975, 2) = 4.303, half width 4.303 * 0.1 / sqrt(3) = 0.248
    assert over_seeds([0.3, 0.4, 0.5]) == "+0.400 [+0.152, +0.648]"

    def gaps(name: str, judge: float) -> dict[str, float]:
        return {
            f"{name}_control_gap_judge": judge,
            f"{name}_control_gap_lexicon": 0.1,
            f"{name}_control_gap_reward": 0.2,
        }

    per_seed = {0: gaps("ppo", 0.3) | gaps("target-sft", 0.2), 1: gaps("ppo", 0.5), 2: gaps("ppo", 0.4)}
    rows = across_seeds(per_seed, ["target-sft", "ppo", "grpo"]).splitlines()
    assert len(rows) == 4 and "grpo" not in rows[-1]
    assert rows[2].startswith("| targets' SFT alone (no RL) | +0.200 | +0.100 | +0.200 | 0: +0.20 |")
    assert rows[3] == (
        "| ppo after the targets' SFT | +0.400 [+0.152, +0.648] | +0.100 [+0.100, +0.100] "
        "| +0.200 [+0.200, +0.200] | 0: +0.30, 1: +0.50, 2: +0.40 |"
    )


def test_algorithms_are_checked_and_run_in_the_order_given(capsys):
    assert parse_args(["--algorithms", "grpo, ppo"]).algorithms == ["grpo", "ppo"]
    with pytest.raises(SystemExit):
        parse_args(["--algorithms", "ppo,dpo"])
    assert "dpo" in capsys.readouterr().err
