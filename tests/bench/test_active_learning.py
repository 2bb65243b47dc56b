"""The active-learning benchmark's pure parts: its ground truth, held-out split, arrival order and arithmetic."""

from __future__ import annotations

import pytest
from active_learning import (
    Passage,
    accuracy,
    arrival_order,
    held_out,
    labels_to_reach,
    parse_args,
    passages_of,
    t_interval,
    table,
    verdict,
)
from review_site import REVIEW_DOMAIN, review_records


def passage(url: str, number: int) -> Passage:
    return Passage(f"{url}#{number}", f"text {number}", "site.test", url, "positive")


def test_passages_carry_their_page_site_and_sentiment():
    pages, labels = review_records(3, 6, seed=7)
    passages = passages_of(pages, labels)
    assert len(passages) == 6
    assert {one.site for one in passages} == {REVIEW_DOMAIN}
    by_text = {event.label.text: event.label.sentiment for event in labels}
    assert all(one.sentiment == by_text[one.text] for one in passages)
    assert len({one.key for one in passages}) == 6


def test_held_out_pages_are_a_stable_quarter_or_so():
    urls = [f"http://site.test/{number}" for number in range(400)]
    share = sum(held_out(url) for url in urls) / len(urls)
    assert 0.18 < share < 0.32
    assert [held_out(url) for url in urls] == [held_out(url) for url in urls]


def test_arrival_keeps_each_pages_paragraphs_together_and_in_order():
    passages = [passage(f"http://site.test/{page}", number) for page in range(5) for number in range(3)]
    ordered = arrival_order(passages, seed=1)
    assert sorted(ordered, key=lambda one: one.key) == sorted(passages, key=lambda one: one.key)
    for start in range(0, 15, 3):
        block = ordered[start : start + 3]
        assert len({one.page_url for one in block}) == 1
        assert [one.key for one in block] == sorted(one.key for one in block)
    assert arrival_order(passages, seed=1) == ordered
    assert any(arrival_order(passages, seed=other) != ordered for other in range(2, 6))


def test_accuracy_counts_each_side_of_the_threshold():
    assert accuracy([2.0, -1.0, 0.5, 0.1], 0.3, ["positive", "negative", "negative", "negative"]) == 0.75
    with pytest.raises(ValueError):
        accuracy([1.0], 0.0, [])


def test_t_interval_widens_with_spread_and_is_a_point_for_one_seed():
    assert str(t_interval([0.8])) == "0.800 [0.800, 0.800]"
    narrow, wide = t_interval([0.8, 0.81, 0.79]), t_interval([0.6, 0.8, 1.0])
    assert narrow.mean == pytest.approx(0.8) and wide.mean == pytest.approx(0.8)
    assert wide.high - wide.low > narrow.high - narrow.low > 0
    # Student t with 2 degrees of freedom: 4.303 * sd / sqrt(3).
    assert wide.high == pytest.approx(0.8 + 4.3027 * 0.2 / 3**0.5, rel=1e-3)


def test_labels_to_reach():
    curve = {20: 0.6, 40: 0.8, 80: 0.85, 160: 0.9}
    assert labels_to_reach(curve, 0.8) == 40
    assert labels_to_reach(curve, 0.95) is None


def test_verdict_and_table():
    met = {"active": {20: [0.7], 80: [0.9], 160: [0.92]}, "arrival": {20: [0.6], 80: [0.8], 160: [0.88]}}
    assert verdict(met).endswith("goal (at most 80 labels) met")
    missed = {"active": {20: [0.7], 80: [0.85], 160: [0.92]}, "arrival": {20: [0.6], 80: [0.8], 160: [0.88]}}
    assert "at 160 labels" in verdict(missed) and verdict(missed).endswith("NOT met")
    rows = table(met).splitlines()
    assert len(rows) == 2 + 3 and rows[2].startswith("| 20 | 0.700")


def test_budgets_must_ascend():
    assert parse_args(["--budgets", "10,30", "--seeds", "4"]).budgets == [10, 30]
    with pytest.raises(SystemExit):
        parse_args(["--budgets", "40,20"])
