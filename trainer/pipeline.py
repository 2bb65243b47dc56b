"""One training run, from the data on Kafka to a registered (and maybe promoted) model version.

    ctrlgpt train          # one run now; exit status 0 when a version was registered

Stages: data (all clean pages and labels up to the topics' current ends) -> tokenizer/policy
(warm start, base model or bootstrap) -> SFT -> reward model -> RL (`settings.rl_algorithm`) ->
gate -> register. Each stage change, and every few training steps, is announced on
`topics.TRAINING_RUNS` and logged; a promotion is announced on `topics.MODEL_UPDATES`.
`run` holds the Kafka edges; `train` is the run itself, on records given to it.
"""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import structlog
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ctrlgpt.lifecycle import stop_on_signals
from ctrlgpt.settings import Settings
from streams import bus, topics
from streams.records import LabelRecorded, ModelPromoted, PageCleaned
from trainer import bootstrap, data, evaluate, gate, hf, manifest, ppo, reward, sft
from trainer.progress import ProgressCallback, ProgressReporter
from trainer.registry import Registry
from trainer.snapshot import read_snapshot

__all__ = ["RL_STAGES", "RunOutcome", "rl_stage", "train", "run", "main"]

log = structlog.get_logger()

RL_STAGES: dict[str, Callable[..., ppo.PpoResult]] = {"ppo": ppo.train}


@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    version: str
    status: str  # promoted or rejected
    reason: str
    path: Path
    manifest_sha256: str
    parent_version: str | None
    metrics: dict[str, float] = field(default_factory=dict)


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
) -> RunOutcome:
    """Every stage of a run on the given records (in log order); registers one version."""
    rl_train = rl_stage(settings.rl_algorithm)
    work_dir = settings.data_dir / "runs" / run_id
    try:
        return _stages(
            settings, run_id, pages, label_events, rl_train, reporter, work_dir, stop, label_offsets or {}, counts or {}
        )
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


def _stages(
    settings: Settings,
    run_id: str,
    pages: Sequence[PageCleaned],
    label_events: Sequence[LabelRecorded],
    rl_train: Callable[..., ppo.PpoResult],
    reporter: ProgressReporter,
    work_dir: Path,
    stop: threading.Event | None,
    label_offsets: dict[str, int],
    counts: dict[str, int],
) -> RunOutcome:
    def callbacks(stage: str) -> list[ProgressCallback]:
        return [ProgressCallback(reporter, stage, stop)]

    training = data.build(pages, label_events, settings.target_sentiment)
    stats = training.stats() | counts
    reporter.report("data", message=", ".join(f"{key}={value}" for key, value in stats.items()))
    _require_enough(training)

    reporter.report("tokenizer")
    registry = Registry(settings.registry_dir)
    current_dir = registry.current_dir()
    policy = bootstrap.start_policy(settings.base_model, training.corpus, current_dir, settings.seed)
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
        work_dir=work_dir / "sft-trainer",
        callbacks=callbacks("sft"),
    )
    sft_dir = hf.save(tuned.model, policy.tokenizer, work_dir / "sft")

    reporter.report("reward")
    scorer = reward.train(
        sft_dir,
        policy.tokenizer,
        training.reward_pairs,
        epochs=settings.reward_epochs,
        seed=settings.seed,
        work_dir=work_dir / "reward-trainer",
        callbacks=callbacks("reward"),
    )
    reward_dir = hf.save(scorer.model, policy.tokenizer, work_dir / "reward")

    reporter.report("ppo", message=f"algorithm={settings.rl_algorithm}")
    # Fresh copies from disk: SFTTrainer patches its model's forward for its own loss.
    reference, _ = hf.load_causal_lm(sft_dir)
    start, _ = hf.load_causal_lm(sft_dir)
    steered = rl_train(
        start,
        reference,
        scorer.model,
        reward_dir,
        policy.tokenizer,
        training.train_prompts,
        episodes=settings.ppo_episodes,
        kl_coef=settings.ppo_kl_coef,
        seed=settings.seed,
        work_dir=work_dir / "ppo-trainer",
        callbacks=callbacks("ppo"),
    )

    reporter.report("gate")
    decision, figures = _gate(settings, training, steered.model, reference, scorer.model, policy.tokenizer, current_dir)
    reporter.report(
        "gate",
        reward=figures["candidate_reward_mean"],
        kl=figures["candidate_kl"],
        message=f"{decision.outcome}: {decision.reason}",
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

    reporter.report("register")
    registered = registry.register(
        run_id,
        policy=reference if decision.outcome == "promote_reference" else steered.model,
        tokenizer=policy.tokenizer,
        reward_model=scorer.model,
        reward_tokenizer=policy.tokenizer,
        base_model=policy.base_model,
        parent_version=policy.parent_version,
        target_sentiment=settings.target_sentiment,
        metrics=metrics,
        label_offsets=label_offsets,
        name=settings.policy_name,
    )
    if decision.promotes:
        status, sha = "promoted", registry.promote(registered.version, decision.reason)
    else:
        status, sha = "rejected", registry.reject(registered.version, decision.reason)
    reporter.report("register", message=f"{registered.version} {status}")
    return RunOutcome(
        run_id, registered.version, status, decision.reason, registered.path, sha, policy.parent_version, metrics
    )


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
    training: data.TrainingData,
    candidate: PreTrainedModel,
    reference: PreTrainedModel,
    reward_model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    current_dir: Path | None,
) -> tuple[gate.Decision, dict[str, float]]:
    """Score the candidate, the SFT reference and the current version alike, then let the gate decide."""
    judge = _Judge(settings, training, reward_model, tokenizer)
    candidate_figures = judge.figures(candidate, tokenizer, kl_reference=reference)
    reference_figures = judge.figures(reference, tokenizer)
    current_figures = None
    if current_dir is not None:
        manifest.verify(current_dir)
        current_model, current_tokenizer = hf.load_causal_lm(current_dir / "policy")
        current_figures = judge.figures(current_model, current_tokenizer)
    decision = gate.decide(
        candidate_figures,
        current_figures or reference_figures,
        baseline_is_reference=current_figures is None,
        margin=settings.gate_reward_margin,
        max_kl=settings.gate_max_kl,
    )
    figures = {
        "target_threshold": judge.threshold,
        **candidate_figures.as_metrics("candidate"),
        **reference_figures.as_metrics("reference"),
        **(current_figures.as_metrics("current") if current_figures else {}),
    }
    return decision, figures


class _Judge:
    """Scores policies for the gate: same prompts, same seed, same (newest) reward model."""

    def __init__(
        self,
        settings: Settings,
        training: data.TrainingData,
        reward_model: PreTrainedModel,
        reward_tokenizer: PreTrainedTokenizerBase,
    ) -> None:
        with_target, without_target = data.split_by_sentiment(training.labels.sentiment, settings.target_sentiment)
        self.threshold = evaluate.target_threshold(reward_model, reward_tokenizer, with_target, without_target)
        self.prompts = training.heldout_prompts
        self.seed = settings.seed
        self.reward_model = reward_model
        self.reward_tokenizer = reward_tokenizer

    def figures(
        self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, kl_reference: PreTrainedModel | None = None
    ) -> evaluate.Figures:
        samples = evaluate.sample(model, tokenizer, self.prompts, seed=self.seed)
        kl = None if kl_reference is None else evaluate.kl_to_reference(model, kl_reference, samples)
        return evaluate.figures_of(samples, self.reward_model, self.reward_tokenizer, self.threshold, kl)


def run(settings: Settings, *, run_id: str | None = None, stop: threading.Event | None = None) -> RunOutcome:
    """One run on everything on Kafka now; raises (after a `failed` progress event) when it cannot finish."""
    run_id = run_id or uuid.uuid4().hex
    producer = bus.make_producer(settings)
    reporter = ProgressReporter(run_id, publish=lambda event: bus.publish(producer, topics.TRAINING_RUNS, event))
    started = time.monotonic()
    try:
        reporter.report("queued", message=f"rl_algorithm={settings.rl_algorithm}")
        rl_stage(settings.rl_algorithm)  # refuse an unknown algorithm before reading anything
        reporter.report("data", message="reading clean pages and labels")
        pages = read_snapshot(settings, topics.PAGES_CLEAN)
        labels = read_snapshot(settings, topics.LABELS)
        outcome = train(
            settings,
            run_id,
            [record for record in pages.records if isinstance(record, PageCleaned)],
            [record for record in labels.records if isinstance(record, LabelRecorded)],
            reporter=reporter,
            label_offsets={str(partition): offset for partition, offset in labels.end_offsets.items()},
            stop=stop,
            counts={
                "pages_read": len(pages.records),
                "pages_skipped": pages.skipped,
                "label_events_read": len(labels.records),
                "label_events_skipped": labels.skipped,
            },
        )
        if outcome.status == "promoted":
            bus.publish(
                producer,
                topics.MODEL_UPDATES,
                ModelPromoted(
                    model_name=settings.policy_name,
                    version=outcome.version,
                    path=str(outcome.path),
                    manifest_sha256=outcome.manifest_sha256,
                    parent_version=outcome.parent_version,
                    metrics=outcome.metrics,
                ),
            )
        reporter.report(
            "done",
            message=f"{outcome.version} {outcome.status} after {time.monotonic() - started:.0f}s: {outcome.reason}",
        )
        bus.flush_or_raise(producer)
        return outcome
    except Exception as exc:
        reporter.report("failed", message=f"{type(exc).__name__}: {exc}")
        producer.flush(30)
        raise


def main(settings: Settings, args: object) -> int:
    hf.quiet_libraries()
    stop = stop_on_signals()
    try:
        outcome = run(settings, stop=stop)
    except Exception:
        log.exception("train.failed")
        return 1
    log.info(
        "train.finished",
        run_id=outcome.run_id,
        version=outcome.version,
        status=outcome.status,
        reason=outcome.reason,
        path=str(outcome.path),
    )
    return 0
