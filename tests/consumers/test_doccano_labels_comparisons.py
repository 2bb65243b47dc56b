"""The comparison project's example layout: what people read, what the bridge reads back (pure)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from consumers.doccano_client import (
    ComparisonPair,
    comparison_example,
    comparison_from_meta,
    comparison_key,
)

PAIR = ComparisonPair(
    prompt="Harbor festival", a="A joyful day.", b="A grim day.", target="positive", page_url="https://news.test/h.html"
)


def test_the_text_shows_the_prompt_and_both_completions_and_the_meta_holds_them_exactly() -> None:
    text, meta = comparison_example(PAIR)
    assert text == "Harbor festival\n\nA: A joyful day.\n\nB: A grim day."
    assert meta == {
        "prompt": "Harbor festival",
        "a": "A joyful day.",
        "b": "A grim day.",
        "target": "positive",
        "model_version": None,
        "url": "https://news.test/h.html",
        "comparison_key": comparison_key(PAIR),
    }
    assert comparison_from_meta(meta) == PAIR


def test_the_key_ignores_the_order_of_the_completions_but_not_the_prompt_or_target() -> None:
    swapped = PAIR.model_copy(update={"a": PAIR.b, "b": PAIR.a})
    assert comparison_key(swapped) == comparison_key(PAIR)
    assert comparison_key(PAIR.model_copy(update={"prompt": "Harbor storm"})) != comparison_key(PAIR)
    assert comparison_key(PAIR.model_copy(update={"target": "negative"})) != comparison_key(PAIR)
    assert comparison_key(PAIR.model_copy(update={"b": "A calm day."})) != comparison_key(PAIR)


def test_two_equal_or_empty_completions_are_no_comparison() -> None:
    with pytest.raises(ValidationError, match="same text"):
        ComparisonPair(prompt="p", a="same", b="same")
    with pytest.raises(ValidationError):
        ComparisonPair(prompt="p", a="", b="other")


def test_meta_that_is_not_a_comparison_is_an_error() -> None:
    with pytest.raises(ValidationError):
        comparison_from_meta({"prompt": "p", "a": "x"})
    with pytest.raises(ValidationError):
        comparison_from_meta({"prompt": "p", "a": "x", "b": "y", "passage_key": "k"})
