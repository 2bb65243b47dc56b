"""The per-target stages of a run: RL toward one target, the gate against that target's current version,
and the registration of the version it gives.

    outcome = steering.steer(config, run_id, target, shared, reporter, work_dir, stop)

`shared` is what the shared stages (`trainer.stages`) trained once for every target. The gate's verdict is
`gate.verdict` (pure): this module measures what it judges on and acts on what it says.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import structlog
from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback

from models import layout, manifest
from models.policy import load_adapter_policy, load_causal_lm, load_policy
from models.registry import Registered, Registry, model_registry
from trainer import bootstrap, data, evaluate, gate, hf, judge, reward, rl
from trainer.progress import ProgressCallback, ProgressReporter, RunCancelled
from trainer.run_config import RunConfig
from trainer.stages import Tuned

__all__ = [
    "Measured",
    "Offsets",
    "RunOutcome",
    "Shared",
    "evaluator_for",
    "independent_judge",
    "measure",
    "raise_if_cancelled",
    "registry_of",
    "reinforce",
    "steer",
]

log = structlog.get_logger()


@dataclass(frozen=True)
class Offsets:
    """Kafka offsets (per partition) the run read up to: its versions record them, the next run starts there."""

    labels: dict[str, int]
    pages: dict[str, int]


@dataclass(frozen=True)
class Shared:
    """What the per-target stages share: the data, the SFT policy and the reward model of this run."""

    training: data.TrainingData
    policy: bootstrap.Policy
    tuned: Tuned
    scorer: reward.RewardResult
    stats: dict[str, int]
    offsets: Offsets


@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    version: str
    status: gate.Status
    reason: str  # the gate's
    path: Path
    manifest_sha256: str
    parent_version: str | None
    metrics: dict[str, float] = field(default_factory=dict)
    target: str = ""  # the sentiment this policy is steered toward
    model_name: str = ""  # its key on topics.MODEL_UPDATES: settings.policy_for(target)


def registry_of(config: RunConfig, target: str) -> Registry:
    return model_registry(config.registry_dir, config.model_names[target])


def raise_if_cancelled(stop: threading.Event | None, stage: str) -> None:
    # Trainers check `stop` between steps (ProgressCallback); stages without a trainer are checked here.
    if stop is not None and stop.is_set():
        raise RunCancelled(f"cancelled before {stage}")


def steer(
    config: RunConfig,
    run_id: str,
    target: str,
    shared: Shared,
    reporter: ProgressReporter,
    work_dir: Path,
    stop: threading.Event | None,
) -> RunOutcome:
    """RL toward one target, its gate against that target's current version, and its registration."""
    tokenizer = shared.policy.tokenizer
    registry = registry_of(config, target)
    current_dir = registry.current_dir()
    parent = registry.current()  # the version this one would replace
    judge_model = reward.toward(shared.scorer.model, data.reward_sign(target, config.anchor))
    reward_dir = hf.save(judge_model, tokenizer, work_dir / f"reward-{target}")

    # RL, from this run's SFT policy, with it as the KL reference
    # The stage is named "ppo" in the event contract (streams.records.RunStage) whatever the algorithm.
    reporter.report("ppo", message=f"target={target} algorithm={config.rl_algorithm}")
    reference = load_causal_lm(shared.tuned.full_dir)[0].to(config.device)
    steered = reinforce(
        config,
        _rl_start(shared),
        reference,
        judge_model,
        reward_dir,
        tokenizer,
        shared.training.train_prompts,
        work_dir / f"rl-trainer-{target}",
        [ProgressCallback(reporter, "ppo", stop)],
    )

    # Gate: the candidate, the SFT reference and the current version scored alike
    raise_if_cancelled(stop, "gate")
    reporter.report("gate", message=f"target={target}")
    measured = measure(config, shared.training, steered.model, reference, judge_model, tokenizer, current_dir, target)
    verdict = measured.verdict(config.gate, pinned=registry.pinned())
    figures = measured.figures(verdict.decision)
    reporter.report(
        "gate",
        reward=figures["candidate_reward_mean"],
        kl=figures["candidate_kl"],
        message=f"target={target} {verdict.decision.outcome}: {verdict.decision.reason}",
    )
    metrics = _metrics(shared, steered, figures)

    # Register, then promote, hold or reject as the verdict says
    raise_if_cancelled(stop, "register")  # a cancelled run registers nothing
    reporter.report("register", message=f"target={target}")
    stored = _sft_policy(shared, reference) if verdict.stores_reference else steered.model
    registered = _register(config, registry, run_id, target, shared, stored, judge_model, parent, metrics)
    sha = _settle(registry, registered.version, verdict)
    reporter.report("register", message=f"{config.model_names[target]} {registered.version} {verdict.status}")
    return RunOutcome(
        run_id,
        registered.version,
        verdict.status,
        verdict.decision.reason,
        registered.path,
        sha,
        parent,
        metrics,
        target=target,
        model_name=config.model_names[target],
    )


def reinforce(
    config: RunConfig,
    start: PreTrainedModel,
    reference: PreTrainedModel,
    reward_model: PreTrainedModel,
    reward_dir: Path,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    work_dir: Path,
    callbacks: Sequence[TrainerCallback] = (),
) -> rl.RlResult:
    """The RL stage (`config.rl_algorithm`) from `start`, with a KL penalty to `reference`."""
    # Only PPO takes an adaptive KL target (`RunConfig.from_settings` refuses one for the others).
    adaptive = {} if config.target_kl is None else {"target_kl": config.target_kl}
    return config.rl_train(
        start,
        reference,
        reward_model,
        reward_dir,
        tokenizer,
        prompts,
        episodes=config.rl_episodes,
        kl_coef=config.kl_coef,
        seed=config.seed,
        device=config.device,
        work_dir=work_dir,
        callbacks=callbacks,
        **adaptive,
    )


def _rl_start(shared: Shared) -> PreTrainedModel:
    """A fresh trainable copy of this run's SFT policy (full weights, or base plus the SFT adapter).

    Every target starts RL from it: it grew from the current version and has learnt the new
    expansions, and it is the KL reference, so the leash starts slack."""
    if shared.policy.adapter is not None and shared.tuned.adapter_dir is not None:
        return load_adapter_policy(shared.policy.adapter, shared.tuned.adapter_dir, trainable=True)[0]
    # Fresh copies from disk: SFTTrainer patches its model's forward for its own loss.
    return load_causal_lm(shared.tuned.full_dir)[0]


def _sft_policy(shared: Shared, reference: PreTrainedModel) -> PreTrainedModel:
    """The SFT policy as a version stores it: its adapter under LoRA, else the full-weight reference."""
    if shared.policy.adapter is not None:
        return shared.tuned.result.model
    return reference


@dataclass(frozen=True)
class Measured:
    """The figures the gate judges on, every policy scored by the same evaluator."""

    candidate: evaluate.Figures
    reference: evaluate.Figures  # the SFT reference's: the baseline when there is no current version
    current: evaluate.Figures | None  # the target's current version's
    threshold: float
    judge_labels: int
    judge_unavailable: str | None  # why there is no judge, when there is none

    def verdict(self, bounds: gate.GateBounds, *, pinned: str | None) -> gate.Verdict:
        return gate.verdict(
            self.candidate,
            self.current or self.reference,
            baseline_is_reference=self.current is None,
            bounds=bounds,
            pinned=pinned,
            judge_unavailable=self.judge_unavailable,
        )

    def figures(self, decision: gate.Decision) -> dict[str, float]:
        """Recorded with the version whatever the outcome: the decision's, the reference's, the current's."""
        return {
            "target_threshold": self.threshold,
            "judge_labels": float(self.judge_labels),
            **decision.figures,
            **self.reference.as_metrics("reference"),
            **(self.current.as_metrics("current") if self.current else {}),
        }


def measure(
    config: RunConfig,
    training: data.TrainingData,
    candidate: PreTrainedModel,
    reference: PreTrainedModel,
    reward_model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    current_dir: Path | None,
    target: str,
) -> Measured:
    """Score the candidate, the SFT reference and the current version (when there is one) alike."""
    verdict, judge_unavailable = independent_judge(config, training, target)
    evaluator = evaluator_for(config, training, reward_model, tokenizer, reference, verdict, target)
    candidate_figures = evaluator.evaluate(candidate, tokenizer, kl_reference=reference).figures
    reference_figures = evaluator.evaluate(reference, tokenizer).figures
    current_figures = None
    if current_dir is not None:
        current_model, current_tokenizer = load_policy(current_dir, manifest.verify(current_dir))
        current_figures = evaluator.evaluate(current_model.to(config.device), current_tokenizer).figures
    return Measured(
        candidate_figures,
        reference_figures,
        current_figures,
        evaluator.threshold,
        verdict.labels if verdict else 0,
        judge_unavailable,
    )


def evaluator_for(
    config: RunConfig,
    training: data.TrainingData,
    reward_model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    reference: PreTrainedModel,
    verdict: judge.Judge | None,
    target: str,
) -> evaluate.Evaluator:
    """The evaluator of the held-out prompts, its target threshold set between the labelled sides."""
    with_target, without_target = data.split_by_sentiment(training.labels.sentiment, target)
    return evaluate.Evaluator(
        training.heldout_prompts,
        seed=config.seed,
        reward_model=reward_model,
        reward_tokenizer=tokenizer,
        threshold=evaluate.target_threshold(reward_model, tokenizer, with_target, without_target),
        reference=reference,
        reference_tokenizer=tokenizer,
        judge=verdict,
        samples_per_prompt=config.samples_per_prompt,
    )


def independent_judge(
    config: RunConfig, training: data.TrainingData, target: str
) -> tuple[judge.Judge | None, str | None]:
    """The judge fit on its share of the sentiment labels, or None and why not."""
    share = judge.split_labels(training.labels.sentiment).judge
    try:
        encoder = judge.load_encoder(config.judge_encoder, config.device)
        return judge.fit(encoder, share.values(), target), None
    except judge.JudgeUnavailable as exc:
        log.warning("gate.judge_unavailable", reason=str(exc), judge_labels=len(share))
        return None, str(exc)


def _metrics(shared: Shared, steered: rl.RlResult, figures: dict[str, float]) -> dict[str, float]:
    return {
        "sft_loss": shared.tuned.result.loss,
        "reward_loss": shared.scorer.loss,
        "reward_accuracy": shared.scorer.accuracy,
        "rl_updates": float(steered.updates),
        **{f"rl_{name}": value for name, value in steered.metrics.items()},  # the RL stage's last reward, KL, loss
        **figures,
        **{key: float(value) for key, value in shared.stats.items()},
    }


def _register(
    config: RunConfig,
    registry: Registry,
    run_id: str,
    target: str,
    shared: Shared,
    policy: PreTrainedModel,
    reward_model: PreTrainedModel,
    parent: str | None,
    metrics: dict[str, float],
) -> Registered:
    """A new version of the target's policy, status candidate until `_settle`."""
    with registry.staging() as staging:
        hf.save(policy, shared.policy.tokenizer, layout.policy_dir(staging))
        hf.save(reward_model, shared.policy.tokenizer, layout.reward_dir(staging))
        return registry.register(
            run_id,
            staging,
            base_model=shared.policy.base_model,
            parent_version=parent,
            target_sentiment=target,
            prompt_template="{prompt}" + data.PROMPT_END,
            metrics=metrics,
            label_offsets=shared.offsets.labels,
            name=config.model_names[target],
            page_offsets=shared.offsets.pages,
            adapter=shared.policy.adapter,
        )


def _settle(registry: Registry, version: str, verdict: gate.Verdict) -> str:
    """The registered version's fate as the verdict says; the sha256 of its manifest after."""
    if verdict.status == "candidate":
        return registry.hold(version, verdict.reason)
    if verdict.status == "promoted":
        return registry.promote(version, verdict.reason)
    return registry.reject(version, verdict.reason)
