"""The per-target stages of a run: RL toward one target, the gate against that target's current version,
and the registration of the version it gives.

    candidates = [steering.steer(config, run_id, target, shared, reporter, work_dir, stop) for target in targets]
    gap = steering.control_figures(config, shared.training, candidates)   # {} unless positive and negative
    outcome = steering.register(config, run_id, candidates[0], shared, reporter, stop, gap)

Registration waits for every target's gate so that each version records the run's control gap, which
needs the outputs of both the positive and the negative policy.

`shared` is what the shared stages (`trainer.stages`) trained once for every target. The gate's verdict is
`gate.verdict` (pure): this module measures what it judges on and acts on what it says.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import structlog
from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback

from models import layout, manifest
from models.policy import load_causal_lm, load_policy
from models.registry import Registered, Registry, model_registry
from trainer import bootstrap, control, data, evaluate, gate, hf, judge, lexicon, reward, rl, stages
from trainer.progress import ProgressCallback, ProgressReporter, RunCancelled
from trainer.run_config import RunConfig
from trainer.stages import Tuned

__all__ = [
    "CONTROL_TARGETS",
    "Candidate",
    "Judges",
    "Measured",
    "Offsets",
    "ReferenceOutputs",
    "RunOutcome",
    "Shared",
    "control_figures",
    "control_gaps",
    "evaluator_for",
    "independent_judge",
    "measure",
    "raise_if_cancelled",
    "register",
    "registry_of",
    "reinforce",
    "steer",
    "target_sft",
]

log = structlog.get_logger()

CONTROL_TARGETS = ("positive", "negative")  # the control gap: positive rate under the first minus under the second


@dataclass(frozen=True)
class Offsets:
    """Kafka offsets (per partition) the run read up to: its versions record them, the next run starts there."""

    labels: dict[str, int]
    pages: dict[str, int]


class ReferenceOutputs:
    """The SFT reference's held-out outputs, sampled once per run: every target's gate samples the same policy on
    the same prompts with the same seed and measures their perplexity under it, so each would draw the same outputs;
    only their rewards and judges differ per target (`evaluate.Outputs`)."""

    def __init__(self) -> None:
        self._outputs: evaluate.Outputs | None = None

    def of(
        self, evaluator: evaluate.Evaluator, reference: PreTrainedModel, tokenizer: PreTrainedTokenizerBase
    ) -> evaluate.Outputs:
        if self._outputs is None:
            self._outputs = evaluator.outputs(reference, tokenizer)
        return self._outputs


@dataclass(frozen=True)
class Shared:
    """What the per-target stages share: the data, the SFT policy and the reward model of this run."""

    training: data.TrainingData
    policy: bootstrap.Policy
    tuned: Tuned
    scorer: reward.RewardResult
    stats: dict[str, int]
    offsets: Offsets
    judges: Judges  # the run's independent judges, for every target's gate and the control gap
    reference_outputs: ReferenceOutputs = field(default_factory=ReferenceOutputs)  # of the shared SFT policy
    # The reward model's score of each training completion (`stages.completion_scores`), for the targets' SFT
    completion_scores: Mapping[str, float] = field(default_factory=dict)


class Judges:
    """A run's independent judges: the MiniLM judge fit once per target on its share of the sentiment
    labels, its encoder loaded once and each text embedded once (`judge.Embeddings`: the labels for every
    target's judge, each policy's outputs for its own target's judge and the control gap's)."""

    def __init__(self, config: RunConfig, training: data.TrainingData) -> None:
        self._config = config
        self._share = judge.split_labels(training.labels.sentiment).judge
        self._embed: judge.Embeddings | None = None
        self._fitted: dict[str, tuple[judge.Judge | None, str | None]] = {}

    def minilm(self, target: str) -> tuple[judge.Judge | None, str | None]:
        """The MiniLM judge toward `target`, or None and why not."""
        if target not in self._fitted:
            try:
                if self._embed is None:
                    self._embed = judge.Embeddings(judge.load_encoder(self._config.judge_encoder, self._config.device))
                self._fitted[target] = judge.fit(self._embed, self._share.values(), target), None
            except judge.JudgeUnavailable as exc:
                log.warning("gate.judge_unavailable", reason=str(exc), judge_labels=len(self._share))
                self._fitted[target] = None, str(exc)
        return self._fitted[target]


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


@dataclass(frozen=True)
class Candidate:
    """One target's RL policy, measured and judged by the gate, not yet registered."""

    target: str
    steered: rl.RlResult
    tuned: Tuned  # the target's SFT policy (`target_sft`): the RL start, and what a failed first run stores
    reference: PreTrainedModel  # the same, full weights: the KL and perplexity reference
    reward_model: PreTrainedModel  # the run's reward model turned toward the target
    parent: str | None  # the version this one would replace
    measured: Measured
    verdict: gate.Verdict
    figures: dict[str, float]  # the gate's (`Measured.figures`)


def steer(
    config: RunConfig,
    run_id: str,
    target: str,
    shared: Shared,
    reporter: ProgressReporter,
    work_dir: Path,
    stop: threading.Event | None,
) -> Candidate:
    """RL toward one target and its gate against that target's current version; `register` records it."""
    tokenizer = shared.policy.tokenizer
    registry = registry_of(config, target)
    current_dir = registry.current_dir()
    parent = registry.current()  # the version this one would replace
    judge_model = reward.toward(shared.scorer.model, data.reward_sign(target, config.anchor))
    reward_dir = hf.save(judge_model, tokenizer, work_dir / f"reward-{target}")

    # RL, from the target's SFT policy, with it as the KL reference
    tuned = target_sft(config, target, shared, reporter, work_dir, stop)
    # The stage is named "ppo" in the event contract (streams.records.RunStage) whatever the algorithm.
    reporter.report("ppo", message=f"target={target} algorithm={config.rl_algorithm}")
    reference = load_causal_lm(tuned.full_dir)[0].to(config.device)
    steered = reinforce(
        config,
        stages.trainable_copy(shared.policy, tuned),
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
    measured = measure(
        config,
        shared.training,
        steered.model,
        reference,
        judge_model,
        tokenizer,
        current_dir,
        target,
        shared.judges,
        # The shared SFT policy's outputs serve every target's gate; a target's own SFT policy is sampled for its own
        shared.reference_outputs if tuned is shared.tuned else None,
    )
    verdict = measured.verdict(config.gate, pinned=registry.pinned())
    figures = measured.figures(verdict.decision)
    reporter.report(
        "gate",
        reward=figures["candidate_reward_mean"],
        kl=figures["candidate_kl"],
        message=f"target={target} {verdict.decision.outcome}: {verdict.decision.reason}",
    )
    return Candidate(target, steered, tuned, reference, judge_model, parent, measured, verdict, figures)


def target_sft(
    config: RunConfig,
    target: str,
    shared: Shared,
    reporter: ProgressReporter,
    work_dir: Path,
    stop: threading.Event | None,
) -> Tuned:
    """The target's SFT policy (`stages.fine_tune_toward`), or the shared one when `target_sft_epochs` is 0."""
    if config.target_sft_epochs == 0:
        return shared.tuned
    raise_if_cancelled(stop, "sft")
    reporter.report("sft", message=f"target={target} epochs={config.target_sft_epochs:g}")
    tuned = stages.fine_tune_toward(
        config,
        target,
        shared.policy,
        shared.tuned,
        shared.training.sft_pairs,
        shared.completion_scores,
        work_dir,
        [ProgressCallback(reporter, "sft", stop)],
    )
    reporter.report("sft", message=f"target={target} loss={tuned.result.loss:.3f}")
    return tuned


def register(
    config: RunConfig,
    run_id: str,
    candidate: Candidate,
    shared: Shared,
    reporter: ProgressReporter,
    stop: threading.Event | None,
    control_figures: dict[str, float],
) -> RunOutcome:
    """Register the candidate's version, then promote, hold or reject it as its verdict says.

    `control_figures`: the run's control gap (`control_figures`), recorded with every target's version."""
    target, verdict = candidate.target, candidate.verdict
    registry = registry_of(config, target)
    metrics = _metrics(shared, candidate, candidate.figures) | control_figures
    raise_if_cancelled(stop, "register")  # a cancelled run registers nothing
    reporter.report("register", message=f"target={target}")
    stored = _sft_policy(shared, candidate) if verdict.stores_reference else candidate.steered.model
    # The flag is the stored policy's: a version that stores the SFT policy in place of a flagged candidate is not.
    hacking = bool(metrics.get("reward_hacking")) and not verdict.stores_reference
    registered = _register(
        config, registry, run_id, target, shared, stored, candidate.reward_model, candidate.parent, metrics, hacking
    )
    sha = _settle(registry, registered.version, verdict)
    reporter.report("register", message=f"{config.model_names[target]} {registered.version} {verdict.status}")
    return RunOutcome(
        run_id,
        registered.version,
        verdict.status,
        verdict.decision.reason,
        registered.path,
        sha,
        candidate.parent,
        metrics,
        target=target,
        model_name=config.model_names[target],
    )


def control_figures(
    config: RunConfig, training: data.TrainingData, candidates: Sequence[Candidate], judges: Judges | None = None
) -> dict[str, float]:
    """The control gap of this run's candidates toward `positive` and toward `negative` (`control_gaps`);
    {} without both."""
    by_target = {candidate.target.strip().lower(): candidate.measured for candidate in candidates}
    if not set(CONTROL_TARGETS) <= set(by_target):
        return {}
    positive, negative = (by_target[target] for target in CONTROL_TARGETS)
    if positive.candidate_evaluation is None or negative.candidate_evaluation is None:
        return {}
    return control_gaps(
        config,
        training,
        (positive.candidate_evaluation, positive.threshold),
        (negative.candidate_evaluation, negative.threshold),
        judges,
    )


def control_gaps(
    config: RunConfig,
    training: data.TrainingData,
    toward_positive: tuple[evaluate.Evaluation, float],
    toward_negative: tuple[evaluate.Evaluation, float],
    judges: Judges | None = None,
) -> dict[str, float]:
    """The control gap with its interval (`control.control_gap`) by the reward model (the product's own
    view), the MiniLM judge fit toward `positive` and the lexicon, from each policy's evaluation and its
    reward model's target threshold. The negative policy's reward model is the positive one turned around,
    so its outputs off its target side are the ones the reward model calls positive. `judges`: the run's
    (`Shared.judges`), so that nothing already embedded is embedded again."""
    evaluations = [toward_positive[0], toward_negative[0]]
    on_target = [
        [value > threshold for value in evaluation.rewards]
        for evaluation, threshold in (toward_positive, toward_negative)
    ]
    verdicts = {"reward": [on_target[0], [not side for side in on_target[1]]]}
    positive_judge, _ = (judges or Judges(config, training)).minilm(CONTROL_TARGETS[0])
    for name, scorer in (("judge", positive_judge), ("lexicon", lexicon.lexicon_judge(CONTROL_TARGETS[0])[0])):
        if scorer is not None:
            verdicts[name] = [
                evaluate.on_target_side(scorer.target_probabilities([one.response for one in evaluation.samples]))
                for evaluation in evaluations
            ]
    figures = {}
    for name, (positive, negative) in verdicts.items():
        gap = control.control_gap(
            positive,
            [one.prompt for one in evaluations[0].samples],
            negative,
            [one.prompt for one in evaluations[1].samples],
            seed=config.seed,
        )
        figures |= gap.as_metrics(f"control_gap_{name}")
    log.info("gate.control_gap", **figures)
    return figures


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


def _sft_policy(shared: Shared, candidate: Candidate) -> PreTrainedModel:
    """The target's SFT policy as a version stores it: its adapter under LoRA, else the full-weight reference."""
    if shared.policy.adapter is not None:
        return candidate.tuned.result.model
    return candidate.reference


@dataclass(frozen=True)
class Measured:
    """The figures the gate judges on, every policy scored by the same evaluator."""

    candidate: evaluate.Figures
    reference: evaluate.Figures  # the SFT reference's: the baseline when there is no current version
    current: evaluate.Figures | None  # the target's current version's
    threshold: float
    judge_labels: int
    judge_unavailable: str | None  # why there is no judge, when there is none
    judge_accuracy: float | None = None  # cross-validated, on labels it never saw
    lexicon_unavailable: str | None = None  # why there is no lexicon judge, when there is none
    candidate_evaluation: evaluate.Evaluation | None = None  # its samples, for the run's control gap

    def verdict(self, bounds: gate.GateBounds, *, pinned: str | None) -> gate.Verdict:
        return gate.verdict(
            self.candidate,
            self.current or self.reference,
            baseline_is_reference=self.current is None,
            bounds=bounds,
            pinned=pinned,
            judge_unavailable=self.judge_unavailable,
            lexicon_unavailable=self.lexicon_unavailable,
        )

    def figures(self, decision: gate.Decision) -> dict[str, float]:
        """Recorded with the version whatever the outcome: the decision's, the reference's, the current's."""
        return {
            "target_threshold": self.threshold,
            "judge_labels": float(self.judge_labels),
            **({} if self.judge_accuracy is None else {"judge_accuracy": self.judge_accuracy}),
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
    judges: Judges | None = None,
    reference_outputs: ReferenceOutputs | None = None,
) -> Measured:
    """Score the candidate, the SFT reference and the current version (when there is one) alike, each
    sampled once; `judges`, `reference_outputs`: the run's (`Shared`), so that another target's gate
    reuses what was already embedded and sampled."""
    verdict, judge_unavailable = (judges or Judges(config, training)).minilm(target)
    by_lexicon, lexicon_unavailable = lexicon.lexicon_judge(target)
    evaluator = evaluator_for(config, training, reward_model, tokenizer, reference, verdict, target, by_lexicon)
    candidate_evaluation = evaluator.evaluate(candidate, tokenizer, kl_reference=reference)
    reference_outputs = reference_outputs or ReferenceOutputs()
    reference_figures = evaluator.evaluate(
        reference, tokenizer, outputs=reference_outputs.of(evaluator, reference, tokenizer)
    ).figures
    current_figures = None
    if current_dir is not None:
        current_model, current_tokenizer = load_policy(current_dir, manifest.verify(current_dir))
        current_figures = evaluator.evaluate(current_model.to(config.device), current_tokenizer).figures
    return Measured(
        candidate_evaluation.figures,
        reference_figures,
        current_figures,
        evaluator.threshold,
        verdict.labels if verdict else 0,
        judge_unavailable,
        judge_accuracy=verdict.accuracy if verdict else None,
        lexicon_unavailable=lexicon_unavailable,
        candidate_evaluation=candidate_evaluation,
    )


def evaluator_for(
    config: RunConfig,
    training: data.TrainingData,
    reward_model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    reference: PreTrainedModel,
    verdict: judge.Judge | None,
    target: str,
    by_lexicon: lexicon.LexiconJudge | None = None,
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
        lexicon=by_lexicon,
    )


def independent_judge(
    config: RunConfig, training: data.TrainingData, target: str
) -> tuple[judge.Judge | None, str | None]:
    """The judge fit on its share of the sentiment labels, or None and why not (one target's `Judges.minilm`)."""
    return Judges(config, training).minilm(target)


def _metrics(shared: Shared, candidate: Candidate, figures: dict[str, float]) -> dict[str, float]:
    steered = candidate.steered
    own_sft = {} if candidate.tuned is shared.tuned else {"target_sft_loss": candidate.tuned.result.loss}
    return {
        "sft_loss": shared.tuned.result.loss,
        **own_sft,
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
    reward_hacking: bool,
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
            reward_hacking=reward_hacking,
        )


def _settle(registry: Registry, version: str, verdict: gate.Verdict) -> str:
    """The registered version's fate as the verdict says; the sha256 of its manifest after."""
    if verdict.status == "candidate":
        return registry.hold(version, verdict.reason)
    if verdict.status == "promoted":
        return registry.promote(version, verdict.reason)
    return registry.reject(version, verdict.reason)
