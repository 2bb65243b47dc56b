"""The label bridge's pure parts: snapshots of each project's annotations, the events diff, its state records."""

from __future__ import annotations

import base64

import pytest
from confluent_kafka import KafkaError, KafkaException

from consumers.doccano_client import ComparisonPair, comparison_example
from consumers.doccano_labels import (
    EXCERPT_BYTES,
    ExampleLabels,
    Outcome,
    _again_while_retriable,
    state_topic,
)
from consumers.label_snapshots import (
    AnnotationSnapshot,
    Rejection,
    annotation_label_id,
    comparison_snapshot,
    expansion_snapshot,
    label_events,
    new_rejections,
    sentiment_snapshot,
)
from streams import groups
from streams.records import ExpansionLabel, PreferenceLabel, SentimentLabel
from streams.topics import dead_letter_topic

EXAMPLE = {"id": 7, "text": "A lovely day in the park.", "meta": {"url": "http://site.test/a.html", "passage_key": "k"}}
LABELS = {11: "positive", 12: "negative"}
VERDICTS = {21: "A better", 22: "B better", 23: "tie"}
USERS = {1: "admin", 2: "alice", 3: "bob"}


def snap(
    example_id: int = 7, sentiment: str = "positive", annotator: str = "alice", text: str = "A lovely day."
) -> AnnotationSnapshot:
    return AnnotationSnapshot(
        example_id=example_id,
        annotator=annotator,
        label=SentimentLabel(text=text, sentiment=sentiment),
        page_url="http://site.test/a.html",
    )


# -- sentiment


def test_sentiment_snapshot_names_label_user_and_page() -> None:
    categories = [{"id": 40, "user": 2, "label": 11}, {"id": 41, "user": 9, "label": 12}]
    snapshot = sentiment_snapshot(3, EXAMPLE, categories, LABELS, USERS)
    assert snapshot.rejected == {}
    assert snapshot.labels == {
        "doccano:3:7:40": AnnotationSnapshot(
            example_id=7,
            annotator="alice",
            label=SentimentLabel(text=EXAMPLE["text"], sentiment="positive"),
            page_url="http://site.test/a.html",
        ),
        "doccano:3:7:41": AnnotationSnapshot(
            example_id=7,
            annotator="user-9",
            label=SentimentLabel(text=EXAMPLE["text"], sentiment="negative"),
            page_url="http://site.test/a.html",
        ),
    }


def test_sentiment_of_an_example_without_url_has_no_page_url() -> None:
    example = {"id": 1, "text": "t", "meta": {}}
    snapshot = sentiment_snapshot(3, example, [{"id": 2, "user": 1, "label": 12}], LABELS, USERS)
    (only,) = snapshot.labels.values()
    assert only.page_url is None


def test_an_unknown_category_type_is_rejected_not_dropped() -> None:
    snapshot = sentiment_snapshot(3, EXAMPLE, [{"id": 40, "user": 2, "label": 99}], LABELS, USERS)
    assert snapshot.labels == {}
    assert list(snapshot.rejected) == ["doccano:3:7:40"]
    assert snapshot.rejected["doccano:3:7:40"].original["annotation"]["label"] == 99


# -- expansions

PROMPT = {"id": 5, "text": "Harbor festival\n\nA festival.", "meta": {"url": "https://news.test/h.html"}}
BODY = "The harbor festival drew a happy crowd."


def expansions(texts: list[dict], confirmed_by: str | None = None) -> dict[str, tuple[str, str]]:
    snapshot = expansion_snapshot(4, PROMPT, texts, proposer="admin", confirmed_by=confirmed_by, usernames=USERS)
    for label in snapshot.labels.values():
        assert (label.label.prompt, label.page_url) == (PROMPT["text"], PROMPT["meta"]["url"])
    return {label_id: (s.annotator, s.label.completion) for label_id, s in snapshot.labels.items()}


def test_an_unchecked_proposal_is_no_label() -> None:
    assert expansions([{"id": 50, "user": 1, "text": BODY}]) == {}


def test_a_checked_proposal_is_approved_by_who_checked_it() -> None:
    assert expansions([{"id": 50, "user": 1, "text": BODY}], confirmed_by="alice") == {
        "doccano:4:5:50": ("alice", BODY)
    }


def test_a_persons_text_is_their_expansion_and_replaces_the_proposal() -> None:
    texts = [{"id": 50, "user": 1, "text": BODY}, {"id": 51, "user": 2, "text": "A calmer crowd came."}]
    assert expansions(texts) == {"doccano:4:5:51": ("alice", "A calmer crowd came.")}
    assert expansions(texts, confirmed_by="alice") == {"doccano:4:5:51": ("alice", "A calmer crowd came.")}


def test_each_persons_text_is_a_label_of_its_own() -> None:
    texts = [{"id": 51, "user": 2, "text": "One."}, {"id": 52, "user": 3, "text": BODY}]
    assert expansions(texts) == {"doccano:4:5:51": ("alice", "One."), "doccano:4:5:52": ("bob", BODY)}


def test_an_empty_expansion_is_rejected() -> None:
    snapshot = expansion_snapshot(
        4, PROMPT, [{"id": 51, "user": 2, "text": ""}], proposer="admin", confirmed_by=None, usernames=USERS
    )
    assert snapshot.labels == {} and list(snapshot.rejected) == ["doccano:4:5:51"]


# -- comparisons

PAIR = ComparisonPair(
    prompt="Harbor festival", a="A joyful day.", b="A grim day.", target="positive", model_version="v1"
)


def comparison(pair: ComparisonPair = PAIR) -> dict:
    return {"id": 8, "text": comparison_example(pair)[0], "meta": comparison_example(pair)[1]}


def test_a_better_and_b_better_are_preferences() -> None:
    categories = [{"id": 60, "user": 2, "label": 21}, {"id": 61, "user": 3, "label": 22}]
    snapshot = comparison_snapshot(6, comparison(), categories, VERDICTS, USERS)
    alice, bob = snapshot.labels["doccano:6:8:60"], snapshot.labels["doccano:6:8:61"]
    assert alice.label == PreferenceLabel(
        prompt="Harbor festival", chosen="A joyful day.", rejected="A grim day.", target="positive"
    )
    assert bob.label == PreferenceLabel(
        prompt="Harbor festival", chosen="A grim day.", rejected="A joyful day.", target="positive"
    )
    assert (alice.annotator, bob.annotator, alice.model_version) == ("alice", "bob", "v1")


def test_a_tie_is_no_preference() -> None:
    snapshot = comparison_snapshot(6, comparison(), [{"id": 60, "user": 2, "label": 23}], VERDICTS, USERS)
    assert snapshot.labels == {} and snapshot.rejected == {}


def test_a_verdict_on_an_example_without_its_pair_is_rejected_with_the_reason() -> None:
    broken = {"id": 8, "text": "Harbor\n\nA: x\n\nB: y", "meta": {"prompt": "Harbor", "a": "x"}}
    snapshot = comparison_snapshot(6, broken, [{"id": 60, "user": 2, "label": 21}], VERDICTS, USERS)
    assert snapshot.labels == {}
    assert "not a comparison" in snapshot.rejected["doccano:6:8:60"].reason


def test_a_tie_on_a_broken_example_is_still_no_preference_and_no_rejection() -> None:
    broken = {"id": 8, "text": "x", "meta": {}}
    snapshot = comparison_snapshot(6, broken, [{"id": 60, "user": 2, "label": 23}], VERDICTS, USERS)
    assert snapshot.labels == {} and snapshot.rejected == {}


# -- events


def test_new_annotations_are_created_events() -> None:
    (event,) = label_events({}, {annotation_label_id(3, 7, 40): snap()})
    assert (event.label_id, event.action, event.source, event.annotator) == (
        "doccano:3:7:40",
        "created",
        "doccano",
        "alice",
    )
    assert (event.label.kind, event.label.text, event.label.sentiment) == ("sentiment", "A lovely day.", "positive")
    assert event.page_url == "http://site.test/a.html"


def test_an_event_carries_the_kind_of_label_and_the_model_version() -> None:
    expansion = AnnotationSnapshot(example_id=1, annotator="bob", label=ExpansionLabel(prompt="p", completion="c"))
    preference = AnnotationSnapshot(
        example_id=2,
        annotator="bob",
        label=PreferenceLabel(prompt="p", chosen="a", rejected="b"),
        model_version="v0003-abc",
    )
    events = label_events({}, {"doccano:1:1:1": expansion, "doccano:2:2:2": preference})
    assert [(e.label.kind, e.model_version) for e in events] == [("expansion", None), ("preference", "v0003-abc")]


def test_unchanged_annotations_give_no_events() -> None:
    state = {"doccano:3:7:40": snap(), "doccano:3:8:41": snap(example_id=8)}
    assert label_events(state, dict(state)) == []


def test_vanished_annotations_are_deleted_events_with_what_they_said() -> None:
    (event,) = label_events({"doccano:3:7:40": snap(sentiment="negative")}, {})
    assert (event.action, event.label_id, event.label.sentiment, event.label.text) == (
        "deleted",
        "doccano:3:7:40",
        "negative",
        "A lovely day.",
    )


def test_a_changed_label_or_text_is_an_updated_event() -> None:
    before = {"doccano:3:7:40": snap(), "doccano:3:7:41": snap()}
    after = {"doccano:3:7:40": snap(sentiment="negative"), "doccano:3:7:41": snap(text="Edited.")}
    events = label_events(before, after)
    assert [(e.label_id, e.action) for e in events] == [("doccano:3:7:40", "updated"), ("doccano:3:7:41", "updated")]
    assert events[0].label.sentiment == "negative" and events[1].label.text == "Edited."


def test_relabelling_in_a_single_class_project_deletes_one_and_creates_another() -> None:
    events = label_events({"doccano:3:7:40": snap()}, {"doccano:3:7:41": snap(sentiment="negative")})
    assert [(e.label_id, e.action, e.label.sentiment) for e in events] == [
        ("doccano:3:7:40", "deleted", "positive"),
        ("doccano:3:7:41", "created", "negative"),
    ]


def test_a_tie_replacing_a_choice_deletes_the_choice() -> None:
    chosen = comparison_snapshot(6, comparison(), [{"id": 60, "user": 2, "label": 21}], VERDICTS, USERS)
    tied = comparison_snapshot(6, comparison(), [{"id": 61, "user": 2, "label": 23}], VERDICTS, USERS)
    (event,) = label_events(chosen.labels, tied.labels)
    assert (event.label_id, event.action, event.label.chosen) == ("doccano:6:8:60", "deleted", "A joyful day.")


def test_a_rejection_is_new_until_dead_lettered_and_again_when_it_changes() -> None:
    first = Rejection(reason="bad", original={"annotation": {"id": 1, "text": ""}})
    changed = Rejection(reason="bad", original={"annotation": {"id": 1, "text": " "}})
    assert new_rejections({}, {"doccano:1:1:1": first}) == {"doccano:1:1:1": first}
    assert new_rejections({"doccano:1:1:1": first.fingerprint}, {"doccano:1:1:1": first}) == {}
    dead_lettered = {"doccano:1:1:1": first.fingerprint}
    assert new_rejections(dead_lettered, {"doccano:1:1:1": changed}) == {"doccano:1:1:1": changed}


# -- the state the bridge keeps per example


def test_an_examples_state_round_trips_through_its_compacted_topic() -> None:
    topic = state_topic(groups.LABEL_BRIDGE)
    labels = ExampleLabels(
        project_id=3, example_id=7, labels={"doccano:3:7:40": snap()}, rejected={"doccano:3:7:41": "f" * 64}
    )
    assert topic.name == "ctrlgpt-label-bridge-state" and topic.cleanup_policy == "compact"
    assert topic.key_of(labels) == b"3:7"
    assert topic.decode(topic.encode(labels)) == labels


def test_an_oversized_rejection_is_dead_lettered_with_an_excerpt_and_its_reason() -> None:
    huge = Rejection(reason="not an expansion", original={"annotation": {"id": 1, "text": "x" * (EXCERPT_BYTES * 3)}})
    (letter,) = Outcome(rejections=[(3, "doccano:3:7:1", huge)]).outgoing(state_topic("g"))
    record = dead_letter_topic("labels").decode(letter.value)
    assert len(base64.b64decode(record.original_base64)) == EXCERPT_BYTES
    assert record.reason.startswith("not an expansion (original ") and record.key == "doccano:3:7:1"


def test_an_example_with_nothing_published_any_more_is_a_tombstone() -> None:
    (tombstone,) = Outcome(states={(3, 7): None}).outgoing(state_topic("g"))
    assert (tombstone.topic, tombstone.key, tombstone.value) == ("g-state", b"3:7", None)


def test_a_transactional_call_is_made_again_after_a_retriable_error_but_not_after_another() -> None:
    calls = []

    def times_out_once() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "Kafka away", retriable=True))

    _again_while_retriable(times_out_once)
    assert len(calls) == 2

    def fenced() -> None:
        raise KafkaException(KafkaError(KafkaError._FENCED, "fenced", fatal=True))

    with pytest.raises(KafkaException):
        _again_while_retriable(fenced)
