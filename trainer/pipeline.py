"""One training run, from the data on Kafka to a registered (and maybe promoted) model version.

    ctrlgpt train          # one run now; exit status 0 when a version was registered per target

Stages: data (what is new since the current version, plus a seeded replay sample of older pages
and labels: `trainer.replay`) -> tokenizer/policy (warm start, base model or bootstrap) -> SFT ->
reward model -> then once per target (`settings.target_list`): RL (`settings.rl_algorithm`) ->
gate -> register under `settings.policy_for(target)`. Each stage change, and every few training
steps, is announced on `topics.TRAINING_RUNS` and logged; a promotion is announced on
`topics.MODEL_UPDATES`. `run` holds the Kafka edges; `train` is the run itself, on records given
to it. docs/training.md tells the design and why.
"""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import structlog
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ctrlgpt.lifecycle import stop_on_signals
from ctrlgpt.settings import Settings
from streams import bus, topics
from models import devices, layout, manifest
from models.announcements import model_update
from models.policy import load_adapter_policy, load_causal_lm, load_policy
from models.registry import Registry, model_registry
from streams.records import LabelRecorded, PageCleaned
from trainer import bootstrap, data, evaluate, gate, hf, judge, ppo, replay, reward, sft
from trainer.progress import ProgressCallback, ProgressReporter, RunCancelled
from streams.snapshot import TopicSnapshot, read_snapshot_when_kafka_is_back

__all__ = [
    "RL_STAGES",
    "RunOutcome",
    "rl_stage",
    "targets_of",
    "registry_of",
    "trained_offsets",
    "train",
    "run",
    "main",
]

log = structlog.get_logger()

R = TypeVar("R")

RL_STAGES: dict[str, Callable[..., ppo.PpoResult]] = {"ppo": ppo.train}


@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    version: str
    status: str  # promoted, rejected, or candidate (passed the gate while an operator pinned another version)
    reason: str
    path: Path
    manifest_sha256: str
    parent_version: str | None
    metrics: dict[str, float] = field(default_factory=dict)
    target: str = ""  # the sentiment this policy is steered toward
    model_name: str = ""  # its key on topics.MODEL_UPDATES: settings.policy_for(target)


def rl_stage(algorithm: str) -> Callable[..., ppo.PpoResult]:
    try:
        return RL_STAGES[algorithm]
    except KeyError:
        raise ValueError(f"unknown rl_algorithm {algorithm!r}; known: {', '.join(sorted(RL_STAGES))}") from None


def train(
    settings: Settings,
    run_id: str,
    pages: Sequence[PageCleaned],
    label_events: Sequence[LabelRecorded],
    *,
    reporter: ProgressReporter,
    label_offsets: dict[str, int] | None = None,
    stop: threading.Event | None = None,
    counts: dict[str, int] | None = None,
    page_offsets: dict[str, int] | None = None,
    on_registered: Callable[[RunOutcome], None] = lambda outcome: None,
) -> list[RunOutcome]:
    """Every stage of a run on the given records (in log order): SFT and the reward model once,
    then RL, gate and registration once per target; registers one version per target.

    `on_registered` sees each target's outcome as soon as it is registered: a promotion is
    announced even when a later target's stages fail."""
    rl_train = rl_stage(settings.rl_algorithm)
    device = devices.of(settings)  # device=cuda without a GPU fails here, before any stage
    work_dir = settings.data_dir / "runs" / run_id
    offsets = _Offsets(label_offsets or {}, page_offsets or {})
    try:
        return _stages(
            settings,
            device,
            run_id,
            pages,
            label_events,
            rl_train,
            reporter,
            work_dir,
            stop,
            offsets,
            counts or {},
            on_registered,
        )
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


@dataclass(frozen=True)
class _Offsets:
    labels: dict[str, int]
    pages: dict[str, int]


def targets_of(settings: Settings) -> list[str]:
    """The targets a run keeps a policy for; the reward model's anchor (`target_sentiment`) among them."""
    targets = settings.target_list
    if settings.target_sentiment not in targets:
        raise ValueError(f"targets {settings.targets!r} must include target_sentiment {settings.target_sentiment!r}")
    return targets


def registry_of(settings: Settings, target: str) -> Registry:
    return model_registry(settings.registry_dir, settings.policy_for(target))


def _lora(settings: Settings) -> bootstrap.Lora | None:
    if settings.policy_adapter == "none":
        return None
    return bootstrap.Lora(settings.lora_r, settings.lora_alpha, settings.registry_dir / "bases")


def _stages(
    settings: Settings,
    device: torch.device,
    run_id: str,
    pages: Sequence[PageCleaned],
    label_events: Sequence[LabelRecorded],
    rl_train: Callable[..., ppo.PpoResult],
    reporter: ProgressReporter,
    work_dir: Path,
    stop: threading.Event | None,
    offsets: _Offsets,
    counts: dict[str, int],
    on_registered: Callable[[RunOutcome], None],
) -> list[RunOutcome]:
    def callbacks(stage: str) -> list[ProgressCallback]:
        return [ProgressCallback(reporter, stage, stop)]

    targets = targets_of(settings)

    training = data.build(pages, label_events, settings.target_sentiment)
    stats = training.stats() | counts
    reporter.report("data", message=", ".join(f"{key}={value}" for key, value in stats.items()))
    _require_enough(training)

    _raise_if_cancelled(stop, "tokenizer")
    reporter.report("tokenizer")
    # The anchor's current version is the warm start of the shared stages (SFT, reward model).
    anchor_dir = registry_of(settings, settings.target_sentiment).current_dir()
    policy = bootstrap.start_policy(settings.base_model, training.corpus, anchor_dir, settings.seed, _lora(settings))
    reporter.report(
        "tokenizer",
        message=f"base={policy.base_model} warm_start={policy.parent_version} vocab={len(policy.tokenizer)}",
    )

    reporter.report("sft")
    tuned = sft.train(
        policy,
        training.sft_pairs,
        epochs=settings.sft_epochs,
        seed=settings.seed,
        device=device,
        work_dir=work_dir / "sft-trainer",
        callbacks=callbacks("sft"),
    )
    # Full weights (a LoRA adapter folded into its base): the PPO reference and the first reward model's start.
    sft_dir = hf.save(hf.merged(tuned.model), policy.tokenizer, work_dir / "sft")
    sft_adapter_dir = hf.save(tuned.model, policy.tokenizer, work_dir / "sft-adapter") if policy.adapter else None

    reporter.report("reward")
    scorer = reward.train(
        _reward_start(policy, anchor_dir) or sft_dir,
        policy.tokenizer,
        training.reward_pairs,
        epochs=settings.reward_epochs,
        seed=settings.seed,
        device=device,
        work_dir=work_dir / "reward-trainer",
        callbacks=callbacks("reward"),
    )
    shared = _Shared(training, policy, tuned, scorer, sft_dir, sft_adapter_dir, stats, offsets, device)
    outcomes = []
    for target in targets:
        outcomes.append(_steer(settings, run_id, target, shared, rl_train, reporter, work_dir, stop, callbacks))
        on_registered(outcomes[-1])
    return outcomes


@dataclass(frozen=True)
class _Shared:
    """What the per-target stages share: the data, the SFT policy and the reward model of this run."""

    training: data.TrainingData
    policy: bootstrap.Policy
    tuned: sft.SftResult
    scorer: reward.RewardResult
    sft_dir: Path
    sft_adapter_dir: Path | None
    stats: dict[str, int]
    offsets: _Offsets
    device: torch.device  # every stage's models run on it


def _reward_start(policy: bootstrap.Policy, anchor_dir: Path | None) -> Path | None:
    """The current reward model, when the policy warm-started from the anchor's version (same tokenizer).

    The anchor's versions store it unflipped: they are steered toward the anchor itself."""
    if anchor_dir is None or policy.parent_version is None or not layout.reward_dir(anchor_dir).is_dir():
        return None
    return layout.reward_dir(anchor_dir)


def _rl_start(shared: _Shared) -> PreTrainedModel:
    """A fresh trainable copy of this run's SFT policy (full weights, or base plus the SFT adapter).

    Every target starts RL from it: it grew from the current version and has learnt the new
    expansions, and it is the KL reference, so the leash starts slack."""
    if shared.policy.adapter is not None and shared.sft_adapter_dir is not None:
        return load_adapter_policy(shared.policy.adapter, shared.sft_adapter_dir, trainable=True)[0]
    # Fresh copies from disk: SFTTrainer patches its model's forward for its own loss.
    return load_causal_lm(shared.sft_dir)[0]


def _steer(
    settings: Settings,
    run_id: str,
    target: str,
    shared: _Shared,
    rl_train: Callable[..., ppo.PpoResult],
    reporter: ProgressReporter,
    work_dir: Path,
    stop: threading.Event | None,
    callbacks: Callable[[str], list[ProgressCallback]],
) -> RunOutcome:
    """RL toward one target, its gate against that target's current version, and its registration."""
    training, policy, tuned, scorer = shared.training, shared.policy, shared.tuned, shared.scorer
    stats, sft_dir = shared.stats, shared.sft_dir
    registry = registry_of(settings, target)
    current_dir = registry.current_dir()
    parent = registry.current()  # the version this one would replace
    judge_model = reward.toward(scorer.model, data.reward_sign(target, settings.target_sentiment))
    reward_dir = hf.save(judge_model, policy.tokenizer, work_dir / f"reward-{target}")

    reporter.report("ppo", message=f"target={target} algorithm={settings.rl_algorithm}")
    reference = load_causal_lm(sft_dir)[0].to(shared.device)
    steered = rl_train(
        _rl_start(shared),
        reference,
        judge_model,
        reward_dir,
        policy.tokenizer,
        training.train_prompts,
        episodes=settings.ppo_episodes,
        kl_coef=settings.ppo_kl_coef,
        seed=settings.seed,
        device=shared.device,
        work_dir=work_dir / f"ppo-trainer-{target}",
        callbacks=callbacks("ppo"),
    )

    _raise_if_cancelled(stop, "gate")
    reporter.report("gate", message=f"target={target}")
    decision, figures = _gate(
        settings, shared.device, training, steered.model, reference, judge_model, policy.tokenizer, current_dir, target
    )
    reporter.report(
        "gate",
        reward=figures["candidate_reward_mean"],
        kl=figures["candidate_kl"],
        message=f"target={target} {decision.outcome}: {decision.reason}",
    )
    metrics = {
        "sft_loss": tuned.loss,
        "reward_loss": scorer.loss,
        "reward_accuracy": scorer.accuracy,
        "ppo_updates": float(steered.updates),
        **{
            f"ppo_{key.split('/')[-1]}": value for key, value in steered.metrics.items() if key.startswith("objective/")
        },
        **figures,
        **{key: float(value) for key, value in stats.items()},
    }

    _raise_if_cancelled(stop, "register")  # a cancelled run registers nothing
    reporter.report("register", message=f"target={target}")
    with registry.staging() as staging:
        served = _sft_policy(shared, reference) if decision.outcome == "promote_reference" else steered.model
        hf.save(served, policy.tokenizer, layout.policy_dir(staging))
        hf.save(judge_model, policy.tokenizer, layout.reward_dir(staging))
        registered = registry.register(
            run_id,
            staging,
            base_model=policy.base_model,
            parent_version=parent,
            target_sentiment=target,
            prompt_template="{prompt}" + data.PROMPT_END,
            metrics=metrics,
            label_offsets=shared.offsets.labels,
            name=settings.policy_for(target),
            page_offsets=shared.offsets.pages,
            adapter=policy.adapter,
        )
    pinned = registry.pinned()
    if decision.promotes and pinned is not None:
        reason = f"passed the gate ({decision.reason}); not promoted: {pinned} is pinned"
        status, sha = "candidate", registry.hold(registered.version, reason)
    elif decision.promotes:
        status, sha = "promoted", registry.promote(registered.version, decision.reason)
    else:
        status, sha = "rejected", registry.reject(registered.version, decision.reason)
    reporter.report("register", message=f"{settings.policy_for(target)} {registered.version} {status}")
    return RunOutcome(
        run_id,
        registered.version,
        status,
        decision.reason,
        registered.path,
        sha,
        parent,
        metrics,
        target=target,
        model_name=settings.policy_for(target),
    )


def _sft_policy(shared: _Shared, reference: PreTrainedModel) -> PreTrainedModel:
    """The SFT policy as a version stores it: its adapter under LoRA, else the full-weight reference."""
    if shared.policy.adapter is not None:
        return shared.tuned.model
    return reference


def _raise_if_cancelled(stop: threading.Event | None, stage: str) -> None:
    # Trainers check `stop` between steps (ProgressCallback); stages without a trainer are checked here.
    if stop is not None and stop.is_set():
        raise RunCancelled(f"cancelled before {stage}")


def _require_enough(training: data.TrainingData) -> None:
    problems = []
    if len(training.train_prompts) < 2:
        problems.append(f"{len(training.train_prompts)} training prompts (need 2: crawl more pages)")
    if not training.heldout_prompts:
        problems.append("no held-out prompts (need 2 pages or more)")
    if not training.reward_pairs:
        problems.append("no reward pairs (label passages both with and without the target sentiment)")
    if problems:
        raise ValueError("not enough data to train: " + "; ".join(problems))


def _gate(
    settings: Settings,
    device: torch.device,
    training: data.TrainingData,
    candidate: PreTrainedModel,
    reference: PreTrainedModel,
    reward_model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    current_dir: Path | None,
    target: str,
) -> tuple[gate.Decision, dict[str, float]]:
    """Score the candidate, the SFT reference and the current version alike, then let the gate decide.

    The figures returned (the decision's and the reference's) are recorded whatever the outcome."""
    verdict, judge_unavailable = _independent_judge(settings, device, training, target)
    with_target, without_target = data.split_by_sentiment(training.labels.sentiment, target)
    evaluator = evaluate.Evaluator(
        training.heldout_prompts,
        seed=settings.seed,
        reward_model=reward_model,
        reward_tokenizer=tokenizer,
        threshold=evaluate.target_threshold(reward_model, tokenizer, with_target, without_target),
        reference=reference,
        reference_tokenizer=tokenizer,
        judge=verdict,
    )
    candidate_figures = evaluator.evaluate(candidate, tokenizer, kl_reference=reference).figures
    reference_figures = evaluator.evaluate(reference, tokenizer).figures
    current_figures = None
    if current_dir is not None:
        current_model, current_tokenizer = load_policy(current_dir, manifest.verify(current_dir))
        current_figures = evaluator.evaluate(current_model.to(device), current_tokenizer).figures
    decision = gate.decide(
        candidate_figures,
        current_figures or reference_figures,
        baseline_is_reference=current_figures is None,
        margin=settings.gate_reward_margin,
        max_kl=settings.gate_max_kl,
        judge_tolerance=settings.gate_judge_tolerance,
        max_perplexity_ratio=settings.gate_max_perplexity_ratio,
        judge_unavailable=judge_unavailable,
    )
    figures = {
        "target_threshold": evaluator.threshold,
        "judge_labels": float(verdict.labels if verdict else 0),
        **decision.figures,
        **reference_figures.as_metrics("reference"),
        **(current_figures.as_metrics("current") if current_figures else {}),
    }
    return decision, figures


def _independent_judge(
    settings: Settings, device: torch.device, training: data.TrainingData, target: str
) -> tuple[judge.Judge | None, str | None]:
    """The judge fit on its share of the sentiment labels, or None and why not."""
    share = judge.split_labels(training.labels.sentiment).judge
    try:
        encoder = judge.load_encoder(settings.judge_encoder, device)
        return judge.fit(encoder, share.values(), target), None
    except judge.JudgeUnavailable as exc:
        log.warning("gate.judge_unavailable", reason=str(exc), judge_labels=len(share))
        return None, str(exc)


def trained_offsets(settings: Settings) -> tuple[dict[str, int], dict[str, int]]:
    """(label, page) offsets the anchor's current version was trained up to; empty before the first version."""
    current_dir = registry_of(settings, settings.target_sentiment).current_dir()
    if current_dir is None:
        return {}, {}
    current = manifest.read_manifest(current_dir)
    return current.label_offsets, current.page_offsets


def run(settings: Settings, *, run_id: str | None = None, stop: threading.Event | None = None) -> list[RunOutcome]:
    """One run on what is new on Kafka (plus a replay sample of older records); one outcome per target.

    Raises (after a `failed` progress event) when it cannot finish."""
    run_id = run_id or uuid.uuid4().hex
    producer = bus.make_producer(settings)
    reporter = ProgressReporter(run_id, publish=lambda event: bus.publish(producer, topics.TRAINING_RUNS, event))
    started = time.monotonic()
    try:
        reporter.report("queued", message=f"rl_algorithm={settings.rl_algorithm}")
        rl_stage(settings.rl_algorithm)  # refuse an unknown algorithm before reading anything
        devices.of(settings)  # and device=cuda without a GPU
        reporter.report("data", message="reading clean pages and labels")
        pages = read_snapshot_when_kafka_is_back(settings, topics.PAGES_CLEAN, stop)
        labels = read_snapshot_when_kafka_is_back(settings, topics.LABELS, stop)
        label_trained, page_trained = trained_offsets(settings)
        chosen_pages = replay.select(
            replay.latest_pages(_positioned(pages, PageCleaned)),
            page_trained,
            settings.train_replay_pages,
            replay.replay_seed(settings.seed, page_trained),
            max_new=settings.train_max_new_pages,
        )
        chosen_labels = replay.select(
            replay.latest_labels(_positioned(labels, LabelRecorded)),
            label_trained,
            settings.train_replay_labels,
            replay.replay_seed(settings.seed, label_trained),
        )
        def announce(outcome: RunOutcome) -> None:
            if outcome.status == "promoted":
                promoted = model_update(
                    outcome.path, manifest.read_manifest(outcome.path), outcome.manifest_sha256, reason=outcome.reason
                )
                # The version is registered already: its announcement waits for Kafka however long it is away,
                # or the API would never learn of it (and the next run would start from a version nobody serves).
                bus.deliver_all(producer, [bus.Outgoing.of(topics.MODEL_UPDATES, promoted)])

        outcomes = train(
            settings,
            run_id,
            chosen_pages.records,
            chosen_labels.records,
            reporter=reporter,
            label_offsets=_as_offsets(labels.end_offsets),
            page_offsets=_as_offsets(pages.end_offsets),
            stop=stop,
            counts={
                "pages_read": len(pages.records),
                "pages_skipped": pages.skipped,
                "pages_new": len(chosen_pages.new),
                "pages_replayed": len(chosen_pages.replayed),
                "label_events_read": len(labels.records),
                "label_events_skipped": labels.skipped,
                "labels_new": len(chosen_labels.new),
                "labels_replayed": len(chosen_labels.replayed),
            },
            on_registered=announce,
        )
        reporter.report(
            "done",
            message=f"after {time.monotonic() - started:.0f}s: "
            + "; ".join(f"{o.model_name} {o.version} {o.status}: {o.reason}" for o in outcomes),
        )
        bus.flush_or_raise(producer)
        return outcomes
    except RunCancelled as exc:
        reporter.report("cancelled", message=str(exc))
        producer.flush(30)
        raise
    except Exception as exc:
        reporter.report("failed", message=f"{type(exc).__name__}: {exc}")
        producer.flush(30)
        raise


def _positioned(snapshot: TopicSnapshot, kind: type[R]) -> list[replay.At[R]]:
    return [
        replay.At(record, partition, offset)
        for record, partition, offset in snapshot.positioned()
        if isinstance(record, kind)
    ]


def _as_offsets(end_offsets: dict[int, int]) -> dict[str, int]:
    return {str(partition): offset for partition, offset in end_offsets.items()}


def main(settings: Settings, args: object) -> int:
    hf.quiet_libraries()
    stop = stop_on_signals()
    try:
        outcomes = run(settings, stop=stop)
    except Exception:
        log.exception("train.failed")
        return 1
    for outcome in outcomes:
        log.info(
            "train.finished",
            run_id=outcome.run_id,
            model_name=outcome.model_name,
            version=outcome.version,
            status=outcome.status,
            reason=outcome.reason,
            path=str(outcome.path),
        )
    return 0
