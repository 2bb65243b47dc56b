import json

import pytest

from streams import topics
from streams.records import CrawlRequested, LabelRecorded, ModelPromoted, PageCleaned
from streams.topics import ContractError


def test_every_topic_round_trips_its_record_type():
    for topic in topics.ALL:
        # ModelPromoted 2: a URI in the model store and the manifest's checksums, signed, in place of a host path.
        assert topic.record.SCHEMA_VERSION == (2 if topic.record is ModelPromoted else 1)
        assert topic.name.startswith("ctrlgpt.")
    assert len({t.name for t in topics.ALL}) == len(topics.ALL)


def test_model_updates_topic_is_compacted_and_keyed_by_model_name():
    assert topics.MODEL_UPDATES.cleanup_policy == "compact"
    promoted = ModelPromoted(version="v0001", uri="s3://m/expansion-policy/v0001", manifest_sha256="ab" * 32)
    assert topics.MODEL_UPDATES.key_of(promoted) == b"expansion-policy"


def test_encode_then_decode_gives_the_same_record():
    label = LabelRecorded(
        label_id="doccano:1:2:3",
        source="doccano",
        annotator="ann",
        label={"kind": "sentiment", "text": "What a lovely day.", "sentiment": "positive"},
    )
    decoded = topics.LABELS.decode(topics.LABELS.encode(label))
    assert decoded == label
    assert decoded.label.sentiment == "positive"


def test_encode_refuses_a_record_of_another_topic():
    with pytest.raises(TypeError, match="carries PageCleaned"):
        topics.PAGES_CLEAN.encode(CrawlRequested(url="http://example.org/", crawl_id="c"))


@pytest.mark.parametrize(
    "payload, reason",
    [
        (None, "tombstone"),
        (b"\xff\xfe not json", "not JSON"),
        (b"[1, 2]", "invalid CrawlRequested"),
        (json.dumps({"url": "ftp://example.org/file", "crawl_id": "c"}).encode(), "http"),
        (json.dumps({"url": "http://example.org/", "crawl_id": "c", "surprise": 1}).encode(), "surprise"),
        (json.dumps({"url": "http://example.org/", "crawl_id": "c", "schema_version": 2}).encode(), "schema_version 2"),
    ],
)
def test_decode_names_what_is_wrong(payload, reason):
    with pytest.raises(ContractError, match=reason):
        topics.CRAWL_REQUESTS.decode(payload)


def test_label_kinds_are_validated():
    with pytest.raises(ContractError, match="label"):
        topics.LABELS.decode(
            json.dumps(
                {"label_id": "x", "source": "api", "annotator": "a", "label": {"kind": "mood", "text": "t"}}
            ).encode()
        )


def test_clean_page_needs_text():
    with pytest.raises(ValueError):
        PageCleaned(
            url="http://example.org/a",
            domain="example.org",
            title="t",
            summary="s",
            text="",
            language="en",
            content_sha256="0",
            fetched_at="2026-01-01T00:00:00Z",
            crawl_id="c",
        )


def test_dead_letter_topics_exist_for_every_stage():
    for stage in topics.STAGES:
        assert topics.by_name(f"ctrlgpt.dlq.{stage}").record.__name__ == "DeadLetter"
    with pytest.raises(ValueError, match="unknown stage"):
        topics.dead_letter_topic("nowhere")


def test_a_dead_letter_of_an_unknown_stage_is_not_a_dead_letter():
    letter = {
        "stage": "cleaner",
        "source_topic": "ctrlgpt.pages.raw",
        "reason": "r",
        "error_type": "E",
        "original_base64": "",
    }
    with pytest.raises(ContractError, match="stage"):
        topics.dead_letter_topic("clean").decode(json.dumps(letter).encode())
    letter["stage"] = "clean"
    assert topics.dead_letter_topic("clean").decode(json.dumps(letter).encode()).stage == "clean"
