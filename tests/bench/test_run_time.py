"""The run-time benchmark cuts a run into its stages by its stamped progress events, and its second site is
seeded reviews of known sentiment."""

from __future__ import annotations

import pytest
from review_site import REVIEW_DOMAIN, review_records
from run_time import Stamp, stage_times

from streams.records import TrainingRunProgressed


def stamp(at: float, stage: str, message: str = "", cpu: float | None = None) -> Stamp:
    event = TrainingRunProgressed(run_id="r", stage=stage, message=message)
    return Stamp(wall=at, cpu=at / 2 if cpu is None else cpu, load=at, event=event)


def test_each_stage_runs_from_its_first_event_to_the_next_stages_and_targets_are_told_apart():
    stamps = [
        stamp(1.0, "data", "sft_pairs=52"),
        stamp(2.0, "tokenizer"),
        stamp(2.5, "tokenizer", "base=bootstrap"),
        stamp(3.0, "sft", "epochs=20"),
        stamp(10.0, "sft"),  # a training step
        stamp(13.0, "reward", "epochs=4"),
        stamp(14.0, "sft", "target=positive epochs=30"),
        stamp(14.5, "sft"),  # a step of the target's SFT
        stamp(15.0, "ppo", "target=positive algorithm=ppo"),
        stamp(20.0, "ppo"),
        stamp(21.0, "gate", "target=positive"),
        stamp(24.0, "gate", "target=positive promote_candidate: better"),
        stamp(25.0, "ppo", "target=negative algorithm=ppo"),
        stamp(31.0, "gate", "target=negative"),
        stamp(33.0, "gate", "target=negative reject_candidate: worse"),
        stamp(33.5, "gate", "control_gap_judge=0.500"),
        stamp(34.0, "register", "target=positive"),
        stamp(35.0, "register", "expansion-policy-positive v0001 promoted"),
        stamp(36.0, "register", "target=negative"),
    ]
    times = stage_times(stamps, start=stamp(0.0, "data"), end=stamp(40.0, "done"))
    assert list(times) == [
        "data",
        "tokenizer",
        "sft",
        "reward",
        "sft positive",
        "ppo positive",
        "gate positive",
        "ppo negative",
        "gate negative",
        "control gap",
        "register",
    ]
    walls = {stage: spent.wall_s for stage, spent in times.items()}
    assert walls == pytest.approx(
        {
            "data": 2.0,  # from the run's start, before its first event
            "tokenizer": 1.0,
            "sft": 10.0,
            "reward": 1.0,
            "sft positive": 1.0,
            "ppo positive": 6.0,
            "gate positive": 4.0,
            "ppo negative": 6.0,
            "gate negative": 2.5,
            "control gap": 0.5,
            "register": 6.0,  # both targets' registrations, to the run's end
        }
    )
    assert times["sft"].cpu_s == pytest.approx(5.0) and times["sft"].load == 3.0
    assert sum(walls.values()) == pytest.approx(40.0)


def test_a_stage_seen_twice_adds_up_and_keeps_the_load_at_its_first_start():
    stamps = [stamp(1.0, "sft"), stamp(2.0, "reward"), stamp(4.0, "sft", "again")]
    times = stage_times(stamps, start=stamp(0.0, "data"), end=stamp(5.0, "done"))
    assert times["sft"].wall_s == pytest.approx(3.0) and times["sft"].load == 0.0
    assert times["reward"].wall_s == pytest.approx(2.0)


def test_the_review_site_is_seeded_of_both_sentiments_and_its_labels_are_its_reviews_passages():
    def content(pages, labels):  # what the seed decides (event ids and creation times are each record's own)
        return [(p.url, p.title, p.text) for p in pages], [(x.label_id, x.label, x.page_url) for x in labels]

    pages, labels = review_records(40, 15, seed=3)
    assert content(pages, labels) == content(*review_records(40, 15, seed=3))
    assert content(pages, labels) != content(*review_records(40, 15, seed=4))
    assert len(pages) == 40 == len({page.url for page in pages}) and {p.domain for p in pages} == {REVIEW_DOMAIN}
    assert len(labels) == 15 == len({label.label_id for label in labels})
    by_url = {page.url: page for page in pages}
    for label in labels:
        page = by_url[label.page_url]
        assert label.label.text in page.text.split("\n\n")
    assert {label.label.sentiment for label in labels} == {"positive", "negative"}
    assert len({label.page_url for label in labels}) == 15  # spread over the site, not bunched on a few pages
    with pytest.raises(ValueError, match="paragraphs"):
        review_records(2, 100)
