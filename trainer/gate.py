"""The promotion gate (pure): does the candidate policy replace the served one?

The candidate is promoted only if its mean reward beats the baseline's by `margin` and its KL
to the SFT reference stays within `max_kl`; both are scored by the same, newest reward model on
the same held-out prompts. The baseline is the current promoted version, or, before any
version exists, the SFT reference itself: then a candidate that fails the gate gives way to the
SFT policy, promoted as the first version, so that there is always a model to serve.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from trainer.evaluate import Figures

__all__ = ["Decision", "decide"]

Outcome = Literal["promote_candidate", "promote_reference", "reject_candidate"]


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    reason: str

    @property
    def promotes(self) -> bool:
        return self.outcome != "reject_candidate"


def decide(
    candidate: Figures, baseline: Figures, *, baseline_is_reference: bool, margin: float, max_kl: float
) -> Decision:
    if candidate.kl is None:
        raise ValueError("the candidate's KL to its reference was not measured")
    baseline_name = "the SFT reference" if baseline_is_reference else "the current version"
    gain = candidate.reward_mean - baseline.reward_mean
    failures = []
    if gain < margin:
        failures.append(
            f"mean reward {candidate.reward_mean:.4f} does not beat {baseline_name}'s {baseline.reward_mean:.4f} "
            f"by the margin {margin:.4f} (gain {gain:+.4f})"
        )
    if candidate.kl > max_kl:
        failures.append(f"KL to the reference {candidate.kl:.4f} exceeds the bound {max_kl:.4f}")
    if not failures:
        return Decision(
            "promote_candidate",
            f"mean reward {candidate.reward_mean:.4f} beats {baseline_name}'s {baseline.reward_mean:.4f} "
            f"by {gain:+.4f} (margin {margin:.4f}) with KL {candidate.kl:.4f} <= {max_kl:.4f}",
        )
    if baseline_is_reference:
        return Decision(
            "promote_reference",
            "no version yet, the RL candidate failed the gate, so the SFT policy "
            "is promoted as the first version: " + "; ".join(failures),
        )
    return Decision("reject_candidate", "; ".join(failures))
