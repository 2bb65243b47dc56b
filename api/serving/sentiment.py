"""Sentiment of texts by a version's reward model (`reward/` beside `policy/`); no HTTP here.

The reward model is a one-output sequence classifier trained on Bradley-Terry pairs: its
score says how much a text has the version's target sentiment. It is loaded and scored by
`models.reward_scoring`, exactly as the trainer scores. What a score means to a reader of
the classify endpoint (a label and a probability) is the API's reading, so it stays here.
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
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from models import reward_scoring
from models.layout import reward_dir
from models.manifest import Manifest

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
            scores = reward_scoring.score(self.model, self.tokenizer, texts)
        return [label_of(score, self.target, self.threshold) for score in scores]


def label_of(score: float, target: str, threshold: float) -> Sentiment:
    margin = score - threshold
    other = OPPOSITE.get(target, f"not {target}")
    probability = 1.0 / (1.0 + math.exp(-margin)) if margin > -700 else 0.0
    return Sentiment(score=score, label=target if margin > 0 else other, probability=probability)


def load_scorer(version_dir: Path, manifest: Manifest, device: torch.device) -> SentimentScorer:
    """The version's reward model (safetensors only) on `device`; its checksums were verified with the manifest."""
    model, tokenizer = reward_scoring.load_reward_model(reward_dir(version_dir))
    model.to(device).eval()
    return SentimentScorer(
        tokenizer=tokenizer,
        model=model,
        target=manifest.target_sentiment,
        threshold=float(manifest.metrics.get("target_threshold", 0.0)),
    )
