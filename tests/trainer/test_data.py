from __future__ import annotations

from datetime import UTC, datetime

import pytest

from deploy.demo_site import article_url, load_articles
from streams.records import (
    ExpansionLabel,
    LabelRecorded,
    PageCleaned,
    PreferenceLabel,
    SentimentLabel,
)
from trainer import data
from trainer.generic_prompts import GENERIC_PROMPTS


def page(url: str, *, title: str = "A title", summary: str = "", text: str = "Some body text.") -> PageCleaned:
    return PageCleaned(
        url=url,
        domain="example.test",
        title=title,
        summary=summary,
        text=text,
        language="en",
        content_sha256="0" * 64,
        fetched_at=datetime(2025, 1, 1, tzinfo=UTC),
        crawl_id="c",
    )


def label_event(label_id: str, label, action: str = "created") -> LabelRecorded:
    return LabelRecorded(label_id=label_id, source="doccano", annotator="a", action=action, label=label)


def sentiment(text: str, value: str) -> SentimentLabel:
    return SentimentLabel(text=text, sentiment=value)


def test_prompt_format_is_title_then_blank_line_with_optional_summary():
    assert data.format_prompt("Hello  world") == "Hello world\n\n"
    assert data.format_prompt("Hello", " A short\nsummary ") == "Hello\nA short summary\n\n"


def test_completion_is_cut_at_a_sentence_end_within_the_limit():
    text = "First sentence. Second one! Third sentence is much longer than the limit allows."
    assert data.cut_completion(text, limit=30) == "First sentence. Second one!"
    assert data.cut_completion("short text", limit=30) == "short text"
    assert data.cut_completion("no sentence end at all in this long text", limit=10) == "no sentenc"


def test_latest_page_per_url_wins():
    old, new = page("http://a.test/1", text="old"), page("http://a.test/1", text="new")
    other = page("http://a.test/0")
    assert [p.text for p in data.latest_pages([old, other, new])] == ["Some body text.", "new"]


def test_held_out_split_is_deterministic_and_covers_both_sides(make_pages):
    pages = make_pages(30)
    train, held = data.split_pages(pages)
    _again_train, again_held = data.split_pages(list(reversed(pages)))
    assert {p.url for p in held} == {p.url for p in again_held}
    assert {p.url for p in train} | {p.url for p in held} == {p.url for p in pages}
    assert not {p.url for p in train} & {p.url for p in held}
    assert all(data.is_held_out(p.url) for p in held)
    assert held and train


def test_split_never_leaves_a_side_empty_with_two_pages():
    for percent in (0, 100):
        train, held = data.split_pages([page("http://a.test/1"), page("http://a.test/2")], percent)
        assert len(train) == 1 and len(held) == 1


def test_expansion_pairs_from_title_and_from_title_with_summary():
    pairs = data.expansion_pairs(
        [page("http://a.test/1", title="T", summary="S", text="Body."), page("http://a.test/2", title="U")]
    )
    assert [(p.prompt, p.completion) for p in pairs] == [
        ("T\n\n", "Body."),
        ("T\nS\n\n", "Body."),
        ("U\n\n", "Some body text."),
    ]


def test_page_prompts_are_the_title_and_the_title_with_summary_once_each():
    pages = [
        page("http://a.test/1", title="Good day", summary="All went well."),
        page("http://a.test/2", title="Bad day"),
        page("http://a.test/3", title="Good day", summary="All went well."),
    ]
    assert data.page_prompts(pages) == [
        data.format_prompt("Good day"),
        data.format_prompt("Good day", "All went well."),
        data.format_prompt("Bad day"),
    ]


def test_untitled_page_uses_its_opening_words_as_title():
    pairs = data.expansion_pairs(
        [page("http://a.test/1", title=" ", text="one two three four five six seven eight nine ten")]
    )
    assert pairs[0].prompt == "one two three four five six seven eight\n\n"


def test_latest_label_event_wins_and_deleted_removes():
    events = [
        label_event("l1", sentiment("good", "negative")),
        label_event("l2", sentiment("bad", "negative")),
        label_event("l1", sentiment("good", "positive"), action="updated"),
        label_event("l2", sentiment("bad", "negative"), action="deleted"),
        label_event("l3", PreferenceLabel(prompt="p", chosen="a", rejected="b")),
        label_event("l4", ExpansionLabel(prompt="p", completion="c")),
    ]
    labels = data.current_labels(events)
    assert labels.sentiment == {"l1": sentiment("good", "positive")}
    assert list(labels.preference) == ["l3"] and list(labels.expansion) == ["l4"]


def test_label_recreated_after_deletion_counts_again():
    events = [
        label_event("l1", sentiment("x", "positive")),
        label_event("l1", sentiment("x", "positive"), action="deleted"),
        label_event("l1", sentiment("y", "negative")),
    ]
    assert data.current_labels(events).sentiment == {"l1": sentiment("y", "negative")}


def test_preference_pairs_put_the_target_sentiment_first():
    labels = {
        "a": sentiment("happy", "Positive"),
        "b": sentiment("sad", "negative"),
        "c": sentiment("meh", "neutral"),
        "d": sentiment("glad", "positive"),
    }
    pairs = data.preference_pairs(labels, "positive", pairs_per_chosen=2)
    assert {(p.chosen, p.rejected) for p in pairs} == {
        ("happy", "sad"),
        ("happy", "meh"),
        ("glad", "sad"),
        ("glad", "meh"),
    }
    assert pairs == data.preference_pairs(dict(reversed(labels.items())), "positive", pairs_per_chosen=2)


def test_preference_pairs_use_every_rejected_text_round_robin():
    labels = {f"p{i}": sentiment(f"good {i}", "positive") for i in range(3)}
    labels |= {f"n{i}": sentiment(f"bad {i}", "negative") for i in range(6)}
    pairs = data.preference_pairs(labels, "positive", pairs_per_chosen=2)
    assert len(pairs) == 6
    assert {p.rejected for p in pairs} == {f"bad {i}" for i in range(6)}


def test_no_preference_pairs_without_both_sides():
    assert data.preference_pairs({"a": sentiment("happy", "positive")}, "positive") == []
    assert data.preference_pairs({"a": sentiment("sad", "negative")}, "positive") == []


def test_build_keeps_held_out_pages_out_of_sft(make_pages, make_labels):
    pages, events = make_pages(30), make_labels(20)
    built = data.build(pages, events, "positive")
    _, held = data.split_pages(data.latest_pages(pages))
    held_urls = {p.url for p in held}
    assert built.sft_pairs and not {pair.url for pair in built.sft_pairs} & held_urls
    assert built.heldout_prompts == data.heldout_prompts(held, trained=set(built.train_prompts))
    assert set(data.page_prompts(held)) - set(built.train_prompts) <= set(built.heldout_prompts)
    assert built.heldout_prompts and not set(built.heldout_prompts) & set(built.train_prompts)
    assert set(built.train_prompts) == {pair.prompt for pair in built.sft_pairs}
    assert built.stats()["sentiment_labels"] == 20 and built.reward_pairs
    assert all(label.text in built.corpus for label in built.labels.sentiment.values())


def test_target_demonstrations_are_the_share_ranked_furthest_toward_the_target_in_their_order():
    pairs = [data.ExpansionPair(f"p{i}\n\n", text, f"u{i}") for i, text in enumerate(["ok", "joy", "grim", "bliss"])]
    scores = {"ok": 0.1, "joy": 2.0, "grim": -3.0, "bliss": 1.5}
    toward_anchor = data.target_demonstrations(pairs, scores, sign=1, share=0.5)
    assert [pair.completion for pair in toward_anchor] == ["joy", "bliss"]
    away = data.target_demonstrations(pairs, scores, sign=-1, share=0.5)
    assert [pair.completion for pair in away] == ["ok", "grim"]
    assert [pair.completion for pair in data.target_demonstrations(pairs, scores, sign=-1, share=0.01)] == ["grim"]
    assert data.target_demonstrations(pairs, scores, sign=1, share=1.0) == pairs
    # Two pairs of one page share its completion, so they are chosen together
    twice = [*pairs, data.ExpansionPair("p1 summary\n\n", "joy", "u1")]
    assert [pair.prompt for pair in data.target_demonstrations(twice, scores, 1, 0.4)] == ["p1\n\n", "p1 summary\n\n"]
    assert data.target_demonstrations([], scores, 1, 0.5) == []
    with pytest.raises(ValueError, match="share"):
        data.target_demonstrations(pairs, scores, 1, 0.0)


def test_first_sentences_of_paragraphs_are_prompts_and_short_or_long_ones_are_left_out():
    body = (
        "The service was quick and the food was hot. We stayed late.\n\n"
        "Too short.\n\n" + "word " * 60 + "\n\n"
        "A paragraph without a sentence end still asks for something"
    )
    assert data.first_sentences([page("https://a.test/1", text=body), page("https://a.test/2", text=body)]) == [
        "The service was quick and the food was hot.\n\n",
        "A paragraph without a sentence end still asks for something\n\n",
    ]


def test_held_out_prompts_take_titles_sentences_and_generic_prompts_in_turn_up_to_the_count():
    held = [
        page(f"https://a.test/{i}", title=f"Title {i}", text=f"First sentence of page {i} here. More.")
        for i in range(3)
    ]
    generic = ["Generic one", "Generic two", "Generic three", "Generic four"]
    assert data.heldout_prompts(held, 7, generic) == [
        "Title 0\n\n",
        "First sentence of page 0 here.\n\n",
        "Generic one\n\n",
        "Title 1\n\n",
        "First sentence of page 1 here.\n\n",
        "Generic two\n\n",
        "Title 2\n\n",
    ]
    everything = data.heldout_prompts(held, 100, generic)
    assert len(everything) == 3 + 3 + 4 and everything[-1] == "Generic four\n\n"
    assert data.heldout_prompts([], 64, generic) == []
    assert "Title 1\n\n" not in data.heldout_prompts(held, 100, generic, trained={"Title 1\n\n"})


def test_the_demo_site_alone_gives_the_gate_its_64_held_out_prompts():
    pages = [
        page(
            article_url("http://demo.bench.test/", article.slug),
            title=article.title,
            summary=article.summary,
            text="\n\n".join(article.paragraphs),
        )
        for article in load_articles()
    ]
    built = data.build(pages, [], "positive")
    assert len(built.heldout_prompts) == data.HELDOUT_PROMPTS == 64
    assert any(prompt.rstrip() in GENERIC_PROMPTS for prompt in built.heldout_prompts)
