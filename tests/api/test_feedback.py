"""POST /v1/feedback: bodies become label events; bad bodies are 422; a Kafka that is down is a 503."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from api.labels import label_event, label_id_for
from api.main import create_app
from streams.records import RatingLabel

RATING = {"kind": "rating", "prompt": "The cat", "completion": " sat down.", "rating": "up", "target": "positive"}
PREFERENCE = {
    "kind": "preference",
    "prompt": "The cat",
    "chosen": " purred.",
    "rejected": " hissed.",
    "target": "positive",
}


def test_a_feedback_id_becomes_the_label_id_and_no_id_gets_a_fresh_one():
    assert label_id_for("abc-1") == "api:abc-1"
    assert label_id_for(None) != label_id_for(None)
    event = label_event(
        RatingLabel(prompt="p", completion="c", rating="down"), feedback_id="f1", client_id=None, model_version="v3"
    )
    assert (event.label_id, event.source, event.annotator, event.model_version) == ("api:f1", "api", "anonymous", "v3")


@pytest.fixture(scope="module")
def client(api_settings):
    with TestClient(create_app(api_settings, follow_updates=False)) as client:
        yield client


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({**RATING, "rating": "sideways"}, "'up' or 'down'"),
        ({**RATING, "kind": "stars"}, "does not match any of the expected tags"),
        ({**RATING, "completion": ""}, "at least 1 character"),
        ({**RATING, "target": "sarcastic"}, "target must be one of: positive"),
        ({**RATING, "feedback_id": "has spaces"}, "pattern"),
        ({**RATING, "extra": 1}, "Extra inputs are not permitted"),
        ({**PREFERENCE, "rejected": PREFERENCE["chosen"]}, "no preference to record"),
        ({k: v for k, v in PREFERENCE.items() if k != "chosen"}, "Field required"),
    ],
)
def test_bad_feedback_is_422_with_the_reason(client, body, fragment):
    response = client.post("/v1/feedback", json=body)
    assert response.status_code == 422, response.text
    assert fragment in response.text


def test_a_bad_client_id_is_422(client):
    response = client.post("/v1/feedback", json=RATING, headers={"X-Client-Id": "not ok!"})
    assert response.status_code == 422
    assert "X-Client-Id" in response.text


def test_kafka_down_is_503_to_retry_never_500(api_settings):
    down = api_settings.model_copy(update={"kafka_bootstrap": "127.0.0.1:1", "feedback_timeout_s": 1.0})
    with TestClient(create_app(down, follow_updates=False)) as client:
        response = client.post("/v1/feedback", json={**RATING, "feedback_id": "never-delivered"})
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"]
    assert "retry" in response.json()["detail"]
