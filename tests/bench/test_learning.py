"""The learning benchmark: its labelled set, its arithmetic, and a smoke run with tiny sizes."""

from __future__ import annotations

import math

import pytest
from learning import Timing, demo_records, overhead, parse_args, run, same_run, step_durations

from deploy.demo_site import load_articles


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


def test_a_tiny_run_measures_every_figure(capsys):
    args = parse_args(
        ["--articles", "12", "--episodes", "8", "--sft-epochs", "1", "--reward-epochs", "1"]
        + ["--samples-per-prompt", "1", "--repeats", "1", "--layers", "1", "--width", "32", "--vocab", "400"]
    )
    report = run(args)
    for when in ("before", "after"):
        for name in ("reward_mean", "target_rate", "judge_target_rate", "perplexity"):
            assert math.isfinite(report.figures[f"{when}_{name}"])
        assert 0 <= report.figures[f"{when}_judge_target_rate"] <= 1
    assert "after_kl" in report.figures and "before_kl" not in report.figures
    assert report.figures["ours_step_s"] > 0 and report.figures["bare_step_s"] > 0
    assert math.isfinite(report.figures["step_overhead"])
    assert "| time per PPO update, bare trl PPOTrainer" in report.table()
    assert ("same run (equal rewards at every update)", "yes") in report.rows
    assert "PPO ours #1" in capsys.readouterr().out
