import pytest

from consumers.active_learning import Candidate, choose, informativeness, reward_probabilities


def candidate(key: str, probability: float | None = None, *, site: str = "a.test", judge: float | None = None,
              text: str | None = None, embedding: list[float] | None = None) -> Candidate:  # fmt: skip
    return Candidate(
        key=key,
        text=text if text is not None else f"passage {key} about its own topic {key}",
        site=site,
        reward_probability=probability,
        judge_probability=judge,
        embedding=embedding,
    )


def keys(chosen: list[Candidate]) -> list[str]:
    return [one.key for one in chosen]


def test_the_most_uncertain_come_first():
    candidates = [candidate("sure", 0.98), candidate("unsure", 0.52), candidate("leaning", 0.8), candidate("no", 0.03)]
    assert keys(choose(candidates, 2, diversity_weight=0.0)) == ["unsure", "leaning"]


def test_disagreement_with_the_judge_counts():
    # Equally sure reward-model probabilities: the one the judge contradicts teaches more.
    agreed = candidate("agreed", 0.9, judge=0.95)
    contradicted = candidate("contradicted", 0.9, judge=0.05)
    assert keys(choose([agreed, contradicted], 1, diversity_weight=0.0)) == ["contradicted"]
    assert informativeness(contradicted) > informativeness(agreed)


def test_informativeness_bounds():
    assert informativeness(candidate("x", 0.5)) == 1.0
    assert informativeness(candidate("x", 1.0)) == 0.0
    assert informativeness(candidate("x")) == 1.0  # no model yet: every passage alike
    assert informativeness(candidate("x", 0.5, judge=0.5)) == pytest.approx(0.5)


def test_the_site_cap_spreads_the_queue_over_sites():
    crowded = [candidate(f"a{n}", 0.5, site="a.test") for n in range(6)]
    others = [candidate(f"b{n}", 0.9, site="b.test") for n in range(2)]
    chosen = choose(crowded + others, 4, site_cap=2)
    assert sorted(one.site for one in chosen) == ["a.test", "a.test", "b.test", "b.test"]


def test_a_single_site_still_fills_the_queue_past_its_cap():
    chosen = choose([candidate(f"a{n}", 0.5) for n in range(5)], 4, site_cap=1)
    assert len(chosen) == 4


def test_near_identical_passages_are_not_picked_together():
    same = "the kettle does exactly what it promises and it does it beautifully"
    candidates = [
        candidate("one", 0.5, text=same),
        candidate("copy", 0.5, text=same + " indeed"),
        candidate("other", 0.6, text="a warm moving film with a wonderful central performance"),
    ]
    assert keys(choose(candidates, 2)) == ["one", "other"]


def test_embeddings_give_the_distances_when_present():
    # Word sets would call "x" and "y" unrelated; their embeddings say they are the same: "z" goes second.
    candidates = [
        candidate("x", 0.5, text="alpha", embedding=[1.0, 0.0]),
        candidate("y", 0.5, text="beta", embedding=[1.0, 0.01]),
        candidate("z", 0.6, text="alpha", embedding=[0.0, 1.0]),
    ]
    assert keys(choose(candidates, 2)) == ["x", "z"]


def test_arrival_keeps_the_order_given():
    candidates = [candidate("first", 0.99), candidate("second", 0.5), candidate("third", 0.5)]
    assert keys(choose(candidates, 2, strategy="arrival")) == ["first", "second"]


@pytest.mark.parametrize("strategy", ["active", "arrival"])
def test_short_and_empty_inputs(strategy):
    assert choose([], 5, strategy=strategy) == []
    assert keys(choose([candidate("only", 0.7)], 5, strategy=strategy)) == ["only"]
    assert choose([candidate("only", 0.7)], 0, strategy=strategy) == []


def test_each_candidate_is_chosen_once():
    candidates = [candidate(f"c{n}", n / 10) for n in range(10)]
    assert sorted(keys(choose(candidates, 10, site_cap=3))) == sorted(keys(candidates))


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="strategy"):
        choose([candidate("x")], 1, strategy="random")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="k must"):
        choose([candidate("x")], -1)
    with pytest.raises(ValueError, match="site_cap"):
        choose([candidate("x")], 1, site_cap=0)


def test_reward_probabilities_are_half_on_the_threshold():
    low, middle, high = reward_probabilities([-3.0, 1.0, 5.0], threshold=1.0)
    assert middle == pytest.approx(0.5)
    assert low < 0.05 and high > 0.95
    assert reward_probabilities([-1000.0], 0.0)[0] == pytest.approx(0.0)  # no overflow
