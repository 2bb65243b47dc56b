"""Which passages people should label next (pure): the ones a label would teach the most.

    chosen = active_learning.choose(candidates, k=20, strategy="active", site_cap=5)

Each `Candidate` is a passage waiting to be labelled, with what the models think of it now: the reward
model's probability that it has the target sentiment (`reward_probability`, from its score by
`reward_probabilities`) and, when the independent judge is fit, the judge's (`judge_probability`), and
optionally the judge's sentence embedding of it. `strategy="active"` picks, greedily, k passages by

- uncertainty: the reward model's probability near 1/2 (a label there moves its decision boundary);
- disagreement: the reward model and the judge far apart (one of them is wrong);
- diversity: far from every passage picked before (max-min distance, on the judge's embeddings when
  given, else on word sets), and at most `site_cap` passages of one site while other sites have any.

`strategy="arrival"` keeps the first k in the order given (the order passages arrived): the plain queue,
kept for comparison (bench/active_learning.py measures both). Without any model yet (no probabilities)
every passage is equally uncertain and diversity alone decides.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = [
    "STRATEGIES",
    "Candidate",
    "Strategy",
    "choose",
    "informativeness",
    "reward_probabilities",
]

Strategy = Literal["active", "arrival"]
STRATEGIES: tuple[Strategy, ...] = ("active", "arrival")

# How much being far from the passages already picked counts beside informativeness (each in [0, 1]): equal
# weight, so a near-duplicate of a chosen passage (distance near 0) loses to any fresh one of like uncertainty.
DIVERSITY_WEIGHT = 1.0
SITE_CAP = 5  # open passages of one site while another has some waiting (the benchmark's default)
_WORD = re.compile(r"[a-z0-9']+")


@dataclass(frozen=True)
class Candidate:
    key: str  # the passage's key (consumers.passages): what the queue and doccano know it by
    text: str
    site: str  # its page's domain: the per-site cap counts by it
    reward_probability: float | None = None  # the reward model's P(target sentiment); None before any model
    judge_probability: float | None = None  # the independent judge's, when it is fit
    embedding: Sequence[float] | None = None  # the judge's sentence embedding, for distances


def reward_probabilities(scores: Sequence[float], threshold: float) -> list[float]:
    """The reward model's scores as probabilities of the target side: sigmoid(score - threshold), the
    Bradley-Terry probability that the passage ranks above one on the model's own boundary
    (`trainer.evaluate.target_threshold`)."""
    return [_sigmoid(score - threshold) for score in scores]


def informativeness(candidate: Candidate) -> float:
    """In [0, 1]: the mean of the reward model's uncertainty (1 at probability 1/2, 0 at 0 or 1) and, when
    the judge has a say, the disagreement |reward - judge|; uncertainty alone otherwise. Unknown (no model
    yet): 1, every passage alike."""
    if candidate.reward_probability is None:
        return 1.0
    uncertainty = 1.0 - abs(2.0 * candidate.reward_probability - 1.0)
    if candidate.judge_probability is None:
        return uncertainty
    return (uncertainty + abs(candidate.reward_probability - candidate.judge_probability)) / 2.0


def choose(
    candidates: Sequence[Candidate],
    k: int,
    *,
    strategy: Strategy = "active",
    site_cap: int | None = None,
    diversity_weight: float = DIVERSITY_WEIGHT,
) -> list[Candidate]:
    """The k passages to label next, in the order to show them (fewer when there are fewer candidates).

    `site_cap`: at most that many of one site, as long as another site has a candidate left; then the
    queue is filled from the capped sites rather than left short (one site crawled: the cap cannot hold)."""
    if k < 0:
        raise ValueError(f"k must be 0 or more, not {k}")
    if strategy == "arrival":
        return list(candidates[:k])
    if strategy != "active":
        raise ValueError(f"unknown strategy {strategy!r}: one of {', '.join(STRATEGIES)}")
    if site_cap is not None and site_cap < 1:
        raise ValueError(f"site_cap must be 1 or more, not {site_cap}")
    count = min(k, len(candidates))
    if count == 0:
        return []
    value = np.array([informativeness(candidate) for candidate in candidates])
    distance = _Distances(candidates)
    nearest = np.ones(len(candidates))  # distance to the nearest chosen passage; 1 (farthest) before any
    open_ = np.ones(len(candidates), dtype=bool)
    per_site: Counter[str] = Counter()
    chosen: list[int] = []
    while len(chosen) < count:
        allowed = open_.copy()
        if site_cap is not None:
            under_cap = np.array([per_site[candidate.site] < site_cap for candidate in candidates])
            if (allowed & under_cap).any():
                allowed &= under_cap
        gain = np.where(allowed, value + diversity_weight * nearest, -np.inf)
        pick = int(np.argmax(gain))  # ties: the earliest arrival
        chosen.append(pick)
        open_[pick] = False
        per_site[candidates[pick].site] += 1
        nearest = np.minimum(nearest, distance.to(pick))
    return [candidates[index] for index in chosen]


class _Distances:
    """Distance in [0, 1] of every candidate to one: cosine distance of the embeddings when every candidate has
    one, else Jaccard distance of their word sets (cheap, and exact about near-identical texts)."""

    def __init__(self, candidates: Sequence[Candidate]) -> None:
        if all(candidate.embedding is not None for candidate in candidates):
            vectors = np.array([candidate.embedding for candidate in candidates], dtype=float)
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            self._unit: np.ndarray | None = vectors / np.where(norms == 0, 1.0, norms)
            self._words: list[frozenset[str]] = []
        else:
            self._unit = None
            self._words = [frozenset(_WORD.findall(candidate.text.lower())) for candidate in candidates]

    def to(self, index: int) -> np.ndarray:
        if self._unit is not None:
            # Cosine distance, clipped: 0 for the same direction, 1 for unrelated (orthogonal) or opposite ones.
            return np.clip(1.0 - self._unit @ self._unit[index], 0.0, 1.0)
        words = self._words[index]
        return np.array([_jaccard_distance(words, other) for other in self._words])


def _jaccard_distance(one: frozenset[str], other: frozenset[str]) -> float:
    union = len(one | other)
    return 1.0 - len(one & other) / union if union else 0.0


def _sigmoid(value: float) -> float:
    if value >= 0:
        return 1.0 / (1.0 + math.exp(-value))
    exponential = math.exp(value)
    return exponential / (1.0 + exponential)
