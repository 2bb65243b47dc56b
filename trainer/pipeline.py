"""One training run, from the data on Kafka to a registered (and maybe promoted) model version per target.

    ctrlgpt train          # one run now; exit status 0 when a version was registered per target

`run` reads as the run's steps: its configuration (`trainer.run_config`), its records from Kafka
(`trainer.run_io`), then `train`, the run itself on records given to it: the shared stages once
(`trainer.stages`: data, tokenizer/policy, SFT, reward model), then per target (`settings.target_list`)
RL, gate and registration (`trainer.steering`). Each stage change, and every few training steps, is
announced on `topics.TRAINING_RUNS` and logged; a promotion is announced on `topics.MODEL_UPDATES`.
docs/training.md tells the design and why.
"""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from collections.abc import Callable, Sequence

import structlog

from ctrlgpt.lifecycle import stop_on_signals
from ctrlgpt.settings import Settings
from streams import bus
from streams.records import LabelRecorded, PageCleaned
from trainer import data, hf, run_io, stages, steering
from trainer.progress import ProgressCallback, ProgressReporter, RunCancelled
from trainer.run_config import RunConfig
from trainer.steering import Offsets, RunOutcome

__all__ = ["main", "run", "train"]

log = structlog.get_logger()


def train(
    config: RunConfig,
    run_id: str,
    pages: Sequence[PageCleaned],
    label_events: Sequence[LabelRecorded],
    *,
    reporter: ProgressReporter,
    offsets: Offsets | None = None,
    stop: threading.Event | None = None,
    counts: dict[str, int] | None = None,
    on_registered: Callable[[RunOutcome], None] = lambda outcome: None,
) -> list[RunOutcome]:
    """Every stage of a run on the given records (in log order): SFT and the reward model once,
    then RL, gate and registration once per target; registers one version per target.

    Every target's version records the run's control gap (when it steered toward positive and negative),
    so registration waits for every target's gate; when a later target's stages fail, the targets already
    judged are registered (without the gap) before the failure is raised. `on_registered` sees each
    target's outcome as soon as it is registered."""
    work_dir = config.runs_dir / run_id

    def callbacks(stage: str) -> list[ProgressCallback]:
        return [ProgressCallback(reporter, stage, stop)]

    try:
        # Data: what is new, plus the replay sample, as pairs and prompts
        training = data.build(pages, label_events, config.anchor, config.heldout_prompts)
        stats = training.stats() | (counts or {})
        reporter.report("data", message=", ".join(f"{key}={value}" for key, value in stats.items()))
        stages.require_enough(training)

        # Tokenizer and policy: the anchor's current version is the warm start of the shared stages
        steering.raise_if_cancelled(stop, "tokenizer")
        reporter.report("tokenizer")
        anchor_dir = steering.registry_of(config, config.anchor).current_dir()
        policy = stages.start_policy(config, training, anchor_dir)
        reporter.report(
            "tokenizer",
            message=f"base={policy.base_model} warm_start={policy.parent_version} vocab={len(policy.tokenizer)}",
        )

        # A fresh bootstrap first reads the training pages' text (bootstrap_pretrain_epochs), reported as part of
        # making the starting policy
        if stages.pretrains(config, policy):
            steering.raise_if_cancelled(stop, "tokenizer")
            reporter.report("tokenizer", message=f"pretraining epochs={config.pretrain_epochs:g}")
            pretrained = stages.pretrain(config, policy, training, work_dir, callbacks("tokenizer"))
            reporter.report("tokenizer", message=f"pretrained blocks={pretrained.blocks} loss={pretrained.loss:.3f}")

        # SFT: fewer epochs on a warm start (sft_incremental_epochs)
        reporter.report("sft", message=f"epochs={config.sft_epochs_for(warm=policy.parent_version is not None):g}")
        tuned = stages.fine_tune(config, policy, training.sft_pairs, work_dir, callbacks("sft"))

        # Reward model: the current one goes on learning, else a fresh head on the SFT policy
        warm_reward = stages.reward_start(policy, anchor_dir)
        reporter.report("reward", message=f"epochs={config.reward_epochs_for(warm=warm_reward is not None):g}")
        scorer = stages.train_reward(
            config,
            warm_reward or tuned.full_dir,
            policy.tokenizer,
            training.reward_pairs,
            work_dir,
            callbacks("reward"),
            warm=warm_reward is not None,
        )

        # Per target: its SFT, RL and gate; then the control gap across targets; then each target's registration
        shared = steering.Shared(
            training,
            policy,
            tuned,
            scorer,
            stats,
            offsets or Offsets({}, {}),
            steering.Judges(config, training),
            # The targets' SFT learns from the pairs this reward model ranks toward each: scored once for all
            completion_scores=stages.completion_scores(scorer.model, policy.tokenizer, training.sft_pairs)
            if config.target_sft_epochs
            else {},
        )

        def register(candidates: Sequence[steering.Candidate], gap: dict[str, float]) -> list[RunOutcome]:
            outcomes = []
            for candidate in candidates:
                outcomes.append(steering.register(config, run_id, candidate, shared, reporter, stop, gap))
                on_registered(outcomes[-1])
            return outcomes

        candidates: list[steering.Candidate] = []
        try:
            for target in config.targets:
                candidates.append(steering.steer(config, run_id, target, shared, reporter, work_dir, stop))
        except RunCancelled:
            raise
        except Exception:
            register(candidates, {})  # the targets already judged keep their versions, without a control gap
            raise
        gap = steering.control_figures(config, training, candidates, shared.judges)
        if gap:
            reporter.report("gate", message=", ".join(f"{key}={value:.3f}" for key, value in gap.items()))
        return register(candidates, gap)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


def run(settings: Settings, *, run_id: str | None = None, stop: threading.Event | None = None) -> list[RunOutcome]:
    """One run on what is new on Kafka (plus a replay sample of older records); one outcome per target.

    Raises (after a `failed` progress event) when it cannot finish."""
    run_id = run_id or uuid.uuid4().hex
    producer = bus.make_producer(settings)
    reporter = run_io.progress_reporter(run_id, producer)
    started = time.monotonic()
    try:
        reporter.report("queued", message=f"rl_algorithm={settings.rl_algorithm}")
        # Configuration: device=cuda without a GPU, or targets without the anchor, is refused before reading anything
        config = RunConfig.from_settings(settings)

        # Inputs from Kafka
        reporter.report("data", message="reading clean pages and labels")
        inputs = run_io.read_inputs(settings, config, stop)

        # The run, each promotion announced as soon as it is registered
        outcomes = train(
            config,
            run_id,
            inputs.pages,
            inputs.labels,
            reporter=reporter,
            offsets=inputs.offsets,
            stop=stop,
            counts=inputs.counts,
            on_registered=lambda outcome: run_io.announce_promotion(settings, producer, outcome),
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
