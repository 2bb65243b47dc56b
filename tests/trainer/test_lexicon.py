"""The lexicon judge: AFINN's word list, offline, read toward either target."""

from __future__ import annotations

import pytest

from trainer import judge, lexicon

TEXTS = ["What a wonderful, happy day.", "An awful, miserable mess.", "The table is in the kitchen."]


def test_positive_and_negative_texts_land_on_their_sides_and_a_text_without_rated_words_on_neither():
    toward_positive = lexicon.LexiconJudge("positive").target_probabilities(TEXTS)
    toward_negative = lexicon.LexiconJudge("Negative ").target_probabilities(TEXTS)
    assert toward_positive[0] > 0.5 > toward_positive[1] and toward_positive[2] == 0.5
    assert toward_negative[1] > 0.5 > toward_negative[0] and toward_negative[2] == 0.5
    assert lexicon.LexiconJudge("positive").target_rate(TEXTS) == pytest.approx(1 / 3)
    assert lexicon.LexiconJudge("negative").target_rate(TEXTS) == pytest.approx(1 / 3)


def test_a_long_text_does_not_overflow():
    assert lexicon.probability_of(10_000.0, 1) == pytest.approx(1.0)
    assert lexicon.probability_of(10_000.0, -1) == pytest.approx(0.0)


def test_a_target_the_word_list_does_not_know_is_unavailable():
    with pytest.raises(judge.JudgeUnavailable, match="not 'neutral'"):
        lexicon.LexiconJudge("neutral")
    assert lexicon.lexicon_judge("neutral") == (
        None,
        "the lexicon judge knows positive and negative only, not 'neutral'",
    )
    found, why = lexicon.lexicon_judge("positive")
    assert isinstance(found, lexicon.LexiconJudge) and why is None
