"""Sentiment of texts by a version's reward model (`reward/` beside `policy/`); no HTTP here.

The reward model is a one-output sequence classifier trained on Bradley-Terry pairs: its
score says how much a text has the version's target sentiment. It is read at the text's
end-of-text token, with left padding and positions counting real tokens only, exactly as
the trainer scores (trainer/reward.py, which the API does not import: it pulls in trl).
The boundary between "has the target sentiment" and "has not" is the threshold the
trainer measured on labelled passages (`target_threshold` in the manifest's metrics).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from trainer import reward_scores
from trainer.manifest import Manifest

REWARD_DIR = "reward"
OPPOSITE = {"positive": "negative", "negative": "positive"}

# A fast tokenizer is not safe to share between threads, and the scorer is shared by requests.
_SCORING_LOCK = threading.Lock()


@dataclass(frozen=True)
class Sentiment:
    score: float
    label: str
    probability: float  # of the target sentiment: the logistic of the score's distance to the threshold


@dataclass(frozen=True, eq=False)
class SentimentScorer:
    tokenizer: PreTrainedTokenizerBase
    model: PreTrainedModel
    target: str
    threshold: float

    def classify(self, texts: Sequence[str]) -> list[Sentiment]:
        """Score and label each text (blocking: call it off the event loop)."""
        with _SCORING_LOCK:
            scores = reward_scores.score(self.model, self.tokenizer, texts)
        return [label_of(score, self.target, self.threshold) for score in scores]


def label_of(score: float, target: str, threshold: float) -> Sentiment:
    margin = score - threshold
    other = OPPOSITE.get(target, f"not {target}")
    probability = 1.0 / (1.0 + math.exp(-margin)) if margin > -700 else 0.0
    return Sentiment(score=score, label=target if margin > 0 else other, probability=probability)


def has_reward_model(manifest: Manifest) -> bool:
    return any(name.startswith(f"{REWARD_DIR}/") for name in manifest.files)


def load_scorer(version_dir: Path, manifest: Manifest, device: torch.device) -> SentimentScorer:
    """The version's reward model (safetensors only) on `device`; its checksums were verified with the manifest."""
    directory = version_dir / REWARD_DIR
    tokenizer = AutoTokenizer.from_pretrained(directory, padding_side="left")
    model = AutoModelForSequenceClassification.from_pretrained(directory, num_labels=1, use_safetensors=True)
    model.to(device).eval()
    model.config.pad_token_id = tokenizer.pad_token_id
    return SentimentScorer(
        tokenizer=tokenizer,
        model=model,
        target=manifest.target_sentiment,
        threshold=float(manifest.metrics.get("target_threshold", 0.0)),
    )
