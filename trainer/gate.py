"""The promotion gate (pure): does the candidate policy replace the served one?

The candidate is promoted only if, on the same held-out prompts, all four hold against the baseline:

    reward      its mean reward beats the baseline's by `margin` (both scored by the newest reward model)
    KL          its KL to the SFT reference stays within `max_kl`
    judges      neither independent judge's target rate (the MiniLM judge's, trainer/judge.py, and the
                AFINN lexicon's, trainer/lexicon.py) falls below the baseline's by more than
                `judge_tolerance`: the gate never rests on one classifier
    fluency     its perplexity under the SFT reference is at most `max_perplexity_ratio` times the baseline's

The baseline is the current promoted version, or, before any version exists, the SFT reference itself:
then a candidate that fails the gate gives way to the SFT policy, promoted as the first version, so that
there is always a model to serve. A judge that cannot judge (too few labels to fit the MiniLM judge, a
target the lexicon does not know) is skipped and the reason says so. The decision carries every figure
it was made on, and `reward_hacking` (1 or 0): the reward rose by the margin while no judge's target rate
rose (`control.reward_hacking`); a flagged candidate may still pass, and its reason says it was flagged.

`verdict` is what a run does with the decision: promote the version it registers, hold it as a candidate
(it passed, but an operator pinned another version), or reject it; and which policy that version stores.

    verdict = gate.verdict(candidate, baseline, baseline_is_reference=False, bounds=bounds, pinned=None)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from trainer import control
from trainer.evaluate import Figures

__all__ = ["Decision", "GateBounds", "Verdict", "decide", "verdict"]

Outcome = Literal["promote_candidate", "promote_reference", "reject_candidate"]
Status = Literal["promoted", "candidate", "rejected"]


@dataclass(frozen=True)
class GateBounds:
    """The four checks' bounds (settings gate_reward_margin, gate_max_kl, gate_judge_tolerance,
    gate_max_perplexity_ratio)."""

    margin: float
    max_kl: float
    judge_tolerance: float
    max_perplexity_ratio: float


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    reason: str
    figures: dict[str, float] = field(default_factory=dict)  # candidate_*, baseline_* and the gate's bounds

    @property
    def promotes(self) -> bool:
        return self.outcome != "reject_candidate"


@dataclass(frozen=True)
class Verdict:
    status: Status  # candidate: passed the gate while an operator pinned another version
    reason: str  # what the registry records with the status
    decision: Decision  # the four checks alone: their reason is the run's outcome's, whatever the pin

    @property
    def stores_reference(self) -> bool:
        """The version stores the SFT policy: the first version, whose RL candidate failed the gate."""
        return self.decision.outcome == "promote_reference"


def verdict(
    candidate: Figures,
    baseline: Figures,
    *,
    baseline_is_reference: bool,
    bounds: GateBounds,
    pinned: str | None,
    judge_unavailable: str | None = None,
    lexicon_unavailable: str | None = None,
) -> Verdict:
    """The gate's decision, then what it means for the registry: `pinned` is the version an operator pinned."""
    decision = decide(
        candidate,
        baseline,
        baseline_is_reference=baseline_is_reference,
        margin=bounds.margin,
        max_kl=bounds.max_kl,
        judge_tolerance=bounds.judge_tolerance,
        max_perplexity_ratio=bounds.max_perplexity_ratio,
        judge_unavailable=judge_unavailable,
        lexicon_unavailable=lexicon_unavailable,
    )
    if decision.promotes and pinned is not None:
        return Verdict("candidate", f"passed the gate ({decision.reason}); not promoted: {pinned} is pinned", decision)
    if decision.promotes:
        return Verdict("promoted", decision.reason, decision)
    return Verdict("rejected", decision.reason, decision)


@dataclass(frozen=True)
class _Check:
    passed: bool
    text: str


def decide(
    candidate: Figures,
    baseline: Figures,
    *,
    baseline_is_reference: bool,
    margin: float,
    max_kl: float,
    judge_tolerance: float,
    max_perplexity_ratio: float,
    judge_unavailable: str | None = None,
    lexicon_unavailable: str | None = None,
) -> Decision:
    """`judge_unavailable`, `lexicon_unavailable`: why a judge has no figures, when it has none."""
    if candidate.kl is None:
        raise ValueError("the candidate's KL to its reference was not measured")
    if candidate.perplexity is None or baseline.perplexity is None:
        raise ValueError("the perplexity of the candidate and of the baseline must both be measured")
    baseline_name = "the SFT reference" if baseline_is_reference else "the current version"
    checks = [
        _reward_check(candidate, baseline, baseline_name, margin),
        _kl_check(candidate.kl, max_kl),
        _judge_check(
            "independent judge",
            candidate.judge_target_rate,
            baseline.judge_target_rate,
            baseline_name,
            judge_tolerance,
            judge_unavailable,
        ),
        _judge_check(
            "lexicon judge",
            candidate.lexicon_target_rate,
            baseline.lexicon_target_rate,
            baseline_name,
            judge_tolerance,
            lexicon_unavailable,
        ),
        _fluency_check(candidate.perplexity, baseline.perplexity, baseline_name, max_perplexity_ratio),
    ]
    figures = {
        **candidate.as_metrics("candidate"),
        **baseline.as_metrics("baseline"),
        "gate_reward_margin": margin,
        "gate_max_kl": max_kl,
        "gate_judge_tolerance": judge_tolerance,
        "gate_max_perplexity_ratio": max_perplexity_ratio,
    }
    hacking, hacking_text = control.reward_hacking(
        candidate.reward_mean - baseline.reward_mean,
        {
            "independent judge": _gain(candidate.judge_target_rate, baseline.judge_target_rate),
            "lexicon judge": _gain(candidate.lexicon_target_rate, baseline.lexicon_target_rate),
        },
        margin=margin,
    )
    figures["reward_hacking"] = float(hacking)
    failures = [check.text for check in checks if not check.passed]
    flagged = [hacking_text] if hacking else []
    if not failures:
        return Decision("promote_candidate", "; ".join([check.text for check in checks] + flagged), figures)
    if baseline_is_reference:
        return Decision(
            "promote_reference",
            "no version yet, the RL candidate failed the gate, so the SFT policy "
            "is promoted as the first version: " + "; ".join(failures + flagged),
            figures,
        )
    return Decision("reject_candidate", "; ".join(failures + flagged), figures)


def _gain(candidate: float | None, baseline: float | None) -> float | None:
    return None if candidate is None or baseline is None else candidate - baseline


def _reward_check(candidate: Figures, baseline: Figures, baseline_name: str, margin: float) -> _Check:
    gain = candidate.reward_mean - baseline.reward_mean
    if gain >= margin:
        return _Check(
            True,
            f"mean reward {candidate.reward_mean:.4f} beats {baseline_name}'s {baseline.reward_mean:.4f} "
            f"by {gain:+.4f} (margin {margin:.4f})",
        )
    return _Check(
        False,
        f"mean reward {candidate.reward_mean:.4f} does not beat {baseline_name}'s {baseline.reward_mean:.4f} "
        f"by the margin {margin:.4f} (gain {gain:+.4f})",
    )


def _kl_check(kl: float, max_kl: float) -> _Check:
    if kl <= max_kl:
        return _Check(True, f"KL to the reference {kl:.4f} <= {max_kl:.4f}")
    return _Check(False, f"KL to the reference {kl:.4f} exceeds the bound {max_kl:.4f}")


def _judge_check(
    name: str,
    candidate_rate: float | None,
    baseline_rate: float | None,
    baseline_name: str,
    tolerance: float,
    unavailable: str | None,
) -> _Check:
    if candidate_rate is None or baseline_rate is None:
        return _Check(True, f"{name} not applied: {unavailable or 'no judge figures'}")
    rates = f"{name}'s target rate {candidate_rate:.3f}"
    if candidate_rate >= baseline_rate - tolerance:
        return _Check(True, f"{rates} >= {baseline_name}'s {baseline_rate:.3f} - {tolerance:.3f}")
    return _Check(
        False,
        f"{rates} falls below {baseline_name}'s {baseline_rate:.3f} by more than the tolerance {tolerance:.3f}",
    )


def _fluency_check(perplexity: float, baseline_perplexity: float, baseline_name: str, max_ratio: float) -> _Check:
    bound = baseline_perplexity * max_ratio
    if perplexity <= bound:
        return _Check(
            True, f"perplexity {perplexity:.2f} <= {max_ratio:.2f} x {baseline_name}'s {baseline_perplexity:.2f}"
        )
    return _Check(
        False,
        f"perplexity {perplexity:.2f} exceeds {max_ratio:.2f} x {baseline_name}'s {baseline_perplexity:.2f} "
        f"(= {bound:.2f})",
    )
