"""The second judge, of another kind: the AFINN word list (Nielsen 2011), no model and nothing learnt.

    verdict = lexicon.LexiconJudge("positive")
    verdict.target_rate(["what a lovely day", "an awful mess"])    # 0.5

AFINN rates about 3,400 English words from -5 to +5; a text's score is the sum over its words. Its list
ships inside the `afinn` package (offline) and no label or policy ever touched it, so it cannot be gamed
the way a fitted classifier can, and it fails differently from the MiniLM judge (trainer/judge.py): the
gate asks both (trainer/gate.py). It knows only two sentiments, positive and negative.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from afinn import Afinn

from trainer.judge import JudgeUnavailable, rate_above

__all__ = ["SIGNS", "LexiconJudge", "lexicon_judge", "probability_of"]

SIGNS = {"positive": 1, "negative": -1}  # the targets the word list can judge, and the sign of their scores
SCORE_CLIP = 50.0


def probability_of(score: float, sign: int) -> float:
    """A score read as a probability of the target: a logistic of the signed score, so that a text without
    a rated word (score 0) sits on the boundary, 0.5, and counts as off the target side."""
    signed = max(-SCORE_CLIP, min(SCORE_CLIP, sign * score))  # a long text's sum must not overflow exp
    return 1 / (1 + math.exp(-signed))


class LexiconJudge:
    """AFINN's verdict on "has the target sentiment" (the `evaluate.TextJudge` protocol)."""

    def __init__(self, target: str) -> None:
        key = target.strip().lower()
        if key not in SIGNS:
            raise JudgeUnavailable(f"the lexicon judge knows {' and '.join(SIGNS)} only, not {target!r}")
        self.target = key
        self.sign = SIGNS[key]
        self._afinn = Afinn(language="en")

    def target_probabilities(self, texts: Sequence[str]) -> list[float]:
        return [probability_of(self._afinn.score(text), self.sign) for text in texts]

    def rate(self, probabilities: Sequence[float]) -> float:
        return rate_above(probabilities)

    def target_rate(self, texts: Sequence[str]) -> float:
        return self.rate(self.target_probabilities(texts))


def lexicon_judge(target: str) -> tuple[LexiconJudge | None, str | None]:
    """The lexicon judge for `target`, or None and why not."""
    try:
        return LexiconJudge(target), None
    except JudgeUnavailable as exc:
        return None, str(exc)
