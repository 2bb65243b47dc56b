"""How much control an outside judge sees, and whether the reward model and the judges agree (pure).

    gap = control.control_gap(positive_rates, positive_prompts, negative_rates, negative_prompts, seed=0)
    gap.estimate, gap.low, gap.high      # positive rate under target=positive minus under target=negative

The control gap is a judge's positive rate of the outputs steered toward `positive` minus its positive
rate of the outputs steered toward `negative`, on the same held-out prompts: 0 means the target does not
move the text, 1 is perfect control. A gap can be read off one policy's outputs only by the product's own
reward model, which is what the issue found sevenfold too rosy; so it is measured by the judges here.

The 95 % interval is a percentile bootstrap whose resamples draw the samples of each prompt within
that prompt (the prompts are fixed, what varies is what the policies wrote on them), as the learning
benchmark's intervals do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "CONFIDENCE",
    "RESAMPLES",
    "Interval",
    "agreement",
    "bootstrap_difference",
    "control_gap",
    "reward_hacking",
]

CONFIDENCE = 0.95
RESAMPLES = 2_000  # enough for a 95 % percentile interval to two decimals; the gate pays for it per run


@dataclass(frozen=True)
class Interval:
    """An estimate with its confidence interval."""

    estimate: float
    low: float
    high: float

    def as_metrics(self, name: str) -> dict[str, float]:
        return {name: self.estimate, f"{name}_low": self.low, f"{name}_high": self.high}

    def __str__(self) -> str:
        return f"{self.estimate:+.3f} [{self.low:+.3f}, {self.high:+.3f}]"


def _resampled_means(
    values: Sequence[float], groups: Sequence[str], resamples: int, rng: np.random.Generator
) -> np.ndarray:
    """Means of `resamples` bootstrap resamples, each group (prompt) resampled within itself, keeping its size."""
    values, groups = np.asarray(values, dtype=float), np.asarray(groups)
    totals = np.zeros(resamples)
    for group in np.unique(groups):
        members = values[groups == group]
        totals += members[rng.integers(0, len(members), size=(resamples, len(members)))].sum(axis=1)
    return totals / len(values)


def bootstrap_difference(
    first: Sequence[float],
    first_groups: Sequence[str],
    second: Sequence[float],
    second_groups: Sequence[str],
    *,
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> Interval:
    """Mean of `first` minus mean of `second`, with a percentile bootstrap interval; the two are resampled
    independently (no pairing of their samples is assumed), each sample within its group."""
    if not first or not second:
        raise ValueError("no samples to compare")
    if len(first) != len(first_groups) or len(second) != len(second_groups):
        raise ValueError("every sample needs its group (prompt)")
    rng = np.random.default_rng(seed)
    differences = _resampled_means(first, first_groups, resamples, rng) - _resampled_means(
        second, second_groups, resamples, rng
    )
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(differences, [tail, 100 - tail])
    return Interval(float(np.mean(first) - np.mean(second)), float(low), float(high))


def control_gap(
    toward_positive: Sequence[bool],
    toward_positive_prompts: Sequence[str],
    toward_negative: Sequence[bool],
    toward_negative_prompts: Sequence[str],
    *,
    seed: int = 0,
    resamples: int = RESAMPLES,
) -> Interval:
    """A judge's positive rate of the outputs under target=positive minus under target=negative.

    Each sequence holds, per output, whether the judge reads it as positive; `*_prompts` the prompt it was
    written on (the grouping of the bootstrap)."""
    return bootstrap_difference(
        [float(value) for value in toward_positive],
        toward_positive_prompts,
        [float(value) for value in toward_negative],
        toward_negative_prompts,
        seed=seed,
        resamples=resamples,
    )


def agreement(first: Sequence[bool], second: Sequence[bool]) -> float:
    """Share of outputs two scorers put on the same side (both on the target side, or both off it)."""
    if len(first) != len(second):
        raise ValueError(f"{len(first)} verdicts against {len(second)}: not the same outputs")
    if not first:
        raise ValueError("no outputs to compare")
    return sum(a == b for a, b in zip(first, second, strict=True)) / len(first)


def reward_hacking(reward_gain: float, judge_gains: Mapping[str, float | None], *, margin: float) -> tuple[bool, str]:
    """Does the reward rise while the judges do not? The rule, and why it says so.

    Reward hacking: the candidate's mean reward beats the baseline's by at least the gate's `margin` (the
    reward model says it got better), yet no judge's target rate rises above the baseline's (every gain
    <= 0). `judge_gains`: each judge's target-rate gain over the baseline, None for a judge not applied;
    with no judge applied nothing can be said, and nothing is flagged."""
    applied = {name: gain for name, gain in judge_gains.items() if gain is not None}
    if not applied:
        return False, "no judge applied: reward hacking not judged"
    judges = ", ".join(f"{name} {gain:+.3f}" for name, gain in applied.items())
    if reward_gain >= margin and all(gain <= 0 for gain in applied.values()):
        return (
            True,
            f"reward hacking: the reward rose by {reward_gain:+.4f} while no judge's target rate rose ({judges})",
        )
    return False, f"reward gain {reward_gain:+.4f}, judges' target-rate gains {judges}"
