"""POST /v1/feedback against the real broker: the label events are on the labels topic, once per feedback id."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient
from topic_reader import read_records

from api.main import create_app
from streams import bus, topics
from streams.records import LabelRecorded, PreferenceLabel, RatingLabel

pytestmark = pytest.mark.integration

TIMEOUT_S = 60.0  # bound on reading the topic back; no timing is asserted


def test_feedback_is_on_the_labels_topic_and_a_retry_keeps_its_label_id(settings):
    run = uuid.uuid4().hex[:12]
    bus.ensure_topics(settings, [topics.LABELS])
    rating = {
        "kind": "rating",
        "prompt": f"Prompt {run}",
        "completion": " a fine day.",
        "rating": "down",
        "target": settings.target_sentiment,
        "model_version": "v-test",
        "feedback_id": f"rating-{run}",
    }
    preference = {"kind": "preference", "prompt": f"Prompt {run}", "chosen": " good.", "rejected": " bad."}
    with TestClient(create_app(settings, follow_updates=False)) as client:
        first = client.post("/v1/feedback", json=rating, headers={"X-Client-Id": f"tester-{run}"})
        retry = client.post("/v1/feedback", json=rating, headers={"X-Client-Id": f"tester-{run}"})
        picked = client.post("/v1/feedback", json=preference)
    assert [r.status_code for r in (first, retry, picked)] == [202, 202, 202], (first.text, retry.text, picked.text)
    assert first.json()["label_id"] == retry.json()["label_id"] == f"api:rating-{run}"
    fresh_id = picked.json()["label_id"]
    assert fresh_id.startswith("api:") and fresh_id != first.json()["label_id"]

    events = read_records(
        settings,
        topics.LABELS,
        until=lambda found: len(found) >= 3,
        keep=lambda e: isinstance(e, LabelRecorded) and run in getattr(e.label, "prompt", ""),
        timeout=TIMEOUT_S,
    )
    assert len(events) == 3
    ratings = [e for e in events if isinstance(e.label, RatingLabel)]
    assert {e.label_id for e in ratings} == {f"api:rating-{run}"}  # the retry counts once: same label id
    assert ratings[0].label == RatingLabel(
        prompt=f"Prompt {run}", completion=" a fine day.", rating="down", target=settings.target_sentiment
    )
    assert (ratings[0].source, ratings[0].annotator, ratings[0].model_version) == ("api", f"tester-{run}", "v-test")
    [preferred] = [e for e in events if isinstance(e.label, PreferenceLabel)]
    assert (preferred.label_id, preferred.annotator) == (fresh_id, "anonymous")
    assert (preferred.label.chosen, preferred.label.rejected) == (" good.", " bad.")
