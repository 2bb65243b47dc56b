"""The soak bench's accounting: what counts as lost, duplicated and absorbed."""

from __future__ import annotations

from collections import Counter

from soak import example_of, tally_labels, tally_pages

from streams.records import LabelRecorded, SentimentLabel


def _label(project: int, example: int, annotation: int, sentiment: str, action: str = "created") -> LabelRecorded:
    return LabelRecorded(
        label_id=f"doccano:{project}:{example}:{annotation}",
        source="doccano",
        annotator="a",
        action=action,
        label=SentimentLabel(text="t", sentiment=sentiment),
    )


def test_pages_are_indexed_dead_lettered_or_lost() -> None:
    tally = tally_pages(
        ["http://s/a", "http://s/b", "http://s/c", "http://s/d"],
        index_versions={"http://s/a": 1, "http://s/b": 3},
        clean_events=Counter({"http://s/a": 1, "http://s/b": 2}),
        dead_lettered_urls={"http://s/c"},
        documents=Counter({"http://s/a": 1, "http://s/b": 2}),
    )
    assert (tally.expected, tally.indexed, tally.dead_lettered, tally.lost) == (4, 2, 1, ["http://s/d"])
    assert (tally.cleaned_more_than_once, tally.written_more_than_once, tally.documents_per_url_over_one) == (1, 1, 1)


def test_labels_lost_duplicated_and_wrong_are_told_apart() -> None:
    made = {10: "positive", 11: "negative", 12: "positive", 13: "negative"}
    events = [
        _label(7, 10, 1, "positive"),
        _label(7, 11, 2, "negative"),
        _label(7, 11, 2, "negative"),  # published twice
        _label(7, 13, 4, "positive"),  # says the wrong thing
        _label(7, 12, 3, "positive", action="deleted"),  # not a creation
        _label(8, 12, 3, "positive"),  # another project
    ]
    tally = tally_labels(7, made, events)
    assert (tally.made, tally.published) == (4, 3)
    assert (tally.lost, tally.duplicated, tally.wrong) == ([12], [11], [13])


def test_label_ids_name_their_example() -> None:
    assert example_of("doccano:3:42:7") == (3, 42)
    assert example_of("api:abc") is None
    assert example_of("doccano:x:1:2") is None
