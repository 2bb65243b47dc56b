"""POST /v1/classify and the reward-model scorer behind it, on a real tiny version with a reward model."""

from __future__ import annotations

import math

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.serving.sentiment import label_of
from api.serving.served_model import ModelHolder

TEXTS = ["A sunny day in the park makes everyone smile.", "The train was late again.", "Kafka"]


def test_label_is_the_target_above_the_threshold_and_its_opposite_below():
    above, below = label_of(1.5, "positive", 0.5), label_of(-0.5, "positive", 0.5)
    assert (above.label, below.label) == ("positive", "negative")
    assert above.probability == pytest.approx(1 / (1 + math.exp(-1.0)))
    assert below.probability == pytest.approx(1 / (1 + math.exp(1.0)))
    assert label_of(0.0, "formal", 1.0).label == "not formal"
    assert label_of(-1e6, "positive", 0.0).probability == 0.0


@pytest.fixture(scope="module")
def scored(make_scored_version):
    return make_scored_version("v-scored", seed=4, threshold=0.01).load()


def test_a_text_scores_the_same_alone_and_in_a_left_padded_batch(scored):
    assert scored.scorer is not None
    together = [one.score for one in scored.scorer.classify(TEXTS)]
    alone = [scored.scorer.classify([text])[0].score for text in TEXTS]
    assert together == pytest.approx(alone, abs=1e-5)
    assert len(set(alone)) == len(alone)  # different texts, different scores: the texts were really read


@pytest.fixture(scope="module")
def client(api_settings, scored):
    holder = ModelHolder()
    holder.swap(scored)
    with TestClient(create_app(api_settings, holder=holder, follow_updates=False)) as client:
        yield client


def test_classify_scores_each_text_with_the_served_version(client, scored):
    response = client.post("/v1/classify", json={"texts": TEXTS})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["model_version"] == "v-scored"
    assert (answer["target"], answer["threshold"]) == ("positive", 0.01)
    expected = scored.scorer.classify(TEXTS)
    assert [one["score"] for one in answer["results"]] == pytest.approx([one.score for one in expected], abs=1e-5)
    for one in answer["results"]:
        assert one["label"] == ("positive" if one["score"] > 0.01 else "negative")


def test_one_text_gets_one_result(client):
    response = client.post("/v1/classify", json={"text": TEXTS[0]})
    assert response.status_code == 200, response.text
    assert len(response.json()["results"]) == 1


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({}, "either `text` or `texts`"),
        ({"text": "a", "texts": ["b"]}, "either `text` or `texts`"),
        ({"texts": []}, "at least 1"),
        ({"texts": ["fine", "   "]}, "blank"),
        ({"texts": ["x"] * 17}, "at most 16 texts"),
        ({"text": "x" * 201}, "at most 200"),
        ({"text": 5}, "string"),
        ({"text": "x", "target": "sarcastic"}, "target must be one of: positive"),
    ],
)
def test_bad_bodies_are_422_with_the_reason(client, body, fragment):
    response = client.post("/v1/classify", json=body)
    assert response.status_code == 422, response.text
    assert fragment in response.text


def test_a_version_without_a_reward_model_is_503_naming_it(api_settings, v1):
    holder = ModelHolder()
    holder.swap(v1.load())
    with TestClient(create_app(api_settings, holder=holder, follow_updates=False)) as client:
        response = client.post("/v1/classify", json={"text": "hello"})
    assert response.status_code == 503
    assert "v1 has no reward model" in response.json()["detail"]


def test_a_target_without_a_loaded_version_is_503_naming_it(api_settings, scored):
    two_targets = api_settings.model_copy(update={"targets": "positive,negative"})
    holder = ModelHolder()
    holder.swap(scored)
    with TestClient(create_app(two_targets, holder=holder, follow_updates=False)) as client:
        served = client.post("/v1/classify", json={"text": "hello", "target": "positive"})
        waiting = client.post("/v1/classify", json={"text": "hello", "target": "negative"})
    assert served.status_code == 200 and served.json()["model_version"] == "v-scored"
    assert waiting.status_code == 503
    assert "'negative'" in waiting.json()["detail"]
