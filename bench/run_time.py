"""Run-time benchmark: how long a first run and a label-triggered incremental run take, per stage.

    .venv/bin/python bench/run_time.py [--targets positive,negative] [--review-pages 200] [--review-labels 90]
                                       [--registry DIR] [--first-only]

No services needed. Two `pipeline.train` runs, as the worker calls them, with the pipeline's settings
(env `CTRLGPT_*` apply) and the targets given:

1. the first run: the demo site's 30 articles with one sentiment label per paragraph
   (`learning.demo_records`), registering a version per target in a scratch registry;
2. the incremental run a person's labels trigger next: the demo plus a 200-page review site
   (`review_site.review_records`: product and film reviews of known sentiment) and 90 new labels on
   its passages, chosen as the trainer chooses (`run_io.choose`: what is new since the first run's
   versions plus the replay sample) and warm-started from the first run's versions.

Each progress event is stamped as it is published, with the wall clock and this process's CPU time
(`time.process_time`, all its threads); `stage_times` cuts the run into its stages (data, tokenizer,
sft, reward, then per target RL and gate, the control gap, registration). On a shared machine the wall
time moves with the load (`os.getloadavg`, printed at each stage's start); the CPU time much less.
`--registry DIR` keeps the first run's registry in DIR and, when DIR already holds its versions, skips
the first run: the incremental run can be measured again, on the same start, after a change that only
incremental runs see.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from learning import demo_records
from machine import describe as describe_machine
from report import Report
from review_site import review_records

from ctrlgpt import logs
from ctrlgpt.settings import Settings
from deploy.demo_site import load_articles
from streams.records import LabelRecorded, PageCleaned, TrainingRunProgressed
from trainer import pipeline, replay, run_io
from trainer.progress import ProgressReporter
from trainer.run_config import RunConfig
from trainer.steering import Offsets, registry_of

__all__ = ["StageTime", "Stamp", "stage_times"]


@dataclass(frozen=True)
class Stamp:
    """A progress event with the clocks' readings when it was published."""

    wall: float
    cpu: float
    load: float  # 1-minute load average
    event: TrainingRunProgressed


@dataclass(frozen=True)
class StageTime:
    wall_s: float
    cpu_s: float
    load: float  # 1-minute load average when the stage began


def _stage_of(event: TrainingRunProgressed, current: str) -> str:
    """The stage an event belongs to: the target's SFT, RL and gate per target (their opening message names it),
    the gate event without a target the control gap; an event without a target (a training step) stays in the
    current one of its stage."""
    target = event.message.split(" ", 1)[0].removeprefix("target=") if event.message.startswith("target=") else None
    if event.stage in ("sft", "ppo", "gate"):
        if target is not None:
            return f"{event.stage} {target}"
        if event.stage == "gate" and event.message:
            return "control gap"
        return current if current.startswith(event.stage) else event.stage
    return event.stage


def stage_times(stamps: Sequence[Stamp], start: Stamp, end: Stamp) -> dict[str, StageTime]:
    """Each stage's time, from its first event to the next stage's first event (the last one to `end`);
    `start` (the run's start, before its first event) opens its first stage. Stages in the order first seen."""
    spans: list[tuple[str, Stamp]] = []
    current = ""
    for stamp in stamps:
        stage = _stage_of(stamp.event, current)
        if stage != current:
            spans.append((stage, stamp if spans else start))
            current = stage
    times: dict[str, StageTime] = {}
    for (stage, opened), (_, closed) in zip(spans, [*spans[1:], ("", end)], strict=True):
        before = times.get(stage, StageTime(0.0, 0.0, opened.load))
        times[stage] = StageTime(
            before.wall_s + closed.wall - opened.wall, before.cpu_s + closed.cpu - opened.cpu, before.load
        )
    return times


def _now(event: TrainingRunProgressed) -> Stamp:
    return Stamp(time.perf_counter(), time.process_time(), os.getloadavg()[0], event)


def _positioned(records: Sequence[PageCleaned | LabelRecorded]) -> list[replay.At]:
    """Records as one partition of their topic holds them, in log order."""
    return [replay.At(record, 0, offset) for offset, record in enumerate(records)]


def timed_run(
    report: Report,
    name: str,
    config: RunConfig,
    pages: Sequence[PageCleaned],
    labels: Sequence[LabelRecorded],
) -> dict[str, StageTime]:
    """One run on the records on the topics (`pages`, `labels`, in log order), chosen as the trainer chooses."""
    chosen = run_io.choose(config, _positioned(pages), _positioned(labels))
    report.add(
        f"{name}: records",
        f"{len(pages)} pages, {len(labels)} labels on the topics; "
        + ", ".join(f"{key}={value}" for key, value in chosen.counts.items()),
    )
    stamps: list[Stamp] = []
    reporter = ProgressReporter(name, lambda event: stamps.append(_now(event)))
    start = _now(TrainingRunProgressed(run_id=name, stage="data"))
    outcomes = pipeline.train(
        config,
        name,
        chosen.pages,
        chosen.labels,
        reporter=reporter,
        offsets=Offsets(labels={"0": len(labels)}, pages={"0": len(pages)}),
        counts=chosen.counts,
    )
    end = _now(TrainingRunProgressed(run_id=name, stage="done"))
    times = stage_times(stamps, start, end)
    for stage, spent in times.items():
        report.add(
            f"{name}: {stage}",
            f"{spent.wall_s:.1f} s wall, {spent.cpu_s:.1f} s CPU (load {spent.load:.1f} at its start)",
            **{
                f"{name}_{stage.replace(' ', '_')}_s": spent.wall_s,
                f"{name}_{stage.replace(' ', '_')}_cpu_s": spent.cpu_s,
            },
        )
    report.add(
        f"{name}: in all",
        f"{end.wall - start.wall:.1f} s wall, {end.cpu - start.cpu:.1f} s CPU; load average after "
        + ", ".join(f"{load:.2f}" for load in os.getloadavg()),
        **{f"{name}_s": end.wall - start.wall, f"{name}_cpu_s": end.cpu - start.cpu},
    )
    for stage in ("sft", "reward"):
        logged = [stamp.event for stamp in stamps if stamp.event.stage == stage and stamp.event.total_steps]
        if logged:
            report.add(
                f"{name}: {stage} steps, last logged loss",
                f"{logged[-1].total_steps}, {logged[-1].loss if logged[-1].loss is not None else 'none'}",
            )
    report.add(f"{name}: outcomes", ", ".join(f"{o.target} {o.version} {o.status}: {o.reason}" for o in outcomes))
    return times


def run(args: argparse.Namespace) -> Report:
    report = Report()
    report.add("machine", describe_machine())
    demo_pages, demo_labels = demo_records(load_articles())
    reviews, review_labels = review_records(args.review_pages, args.review_labels, seed=args.review_seed)
    with tempfile.TemporaryDirectory(prefix="ctrlgpt-run-time-") as scratch:
        data_dir = Path(args.registry or scratch)
        settings = Settings().model_copy(
            update={"data_dir": data_dir, "targets": ",".join(args.targets), "target_sentiment": args.targets[0]}
        )
        config = RunConfig.from_settings(settings)
        report.add(
            "settings",
            f"targets={settings.targets} rl_algorithm={config.rl_algorithm} sft_epochs={settings.sft_epochs} "
            f"target_sft_epochs={settings.target_sft_epochs:g} "
            f"sft_incremental_epochs={settings.sft_incremental_epochs} reward_epochs={settings.reward_epochs} "
            f"reward_incremental_epochs={settings.reward_incremental_epochs} ppo_episodes={settings.ppo_episodes} "
            f"gate {config.heldout_prompts} prompts x {config.samples_per_prompt} samples",
        )
        if registry_of(config, config.anchor).current_dir() is None:
            timed_run(report, "first", config, demo_pages, demo_labels)
        else:
            report.add("first", f"skipped: {data_dir} holds its versions already")
        if not args.first_only:
            timed_run(report, "incremental", config, demo_pages + reviews, demo_labels + review_labels)
    return report


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", default="positive,negative", help="Comma-separated targets, the anchor first.")
    parser.add_argument("--review-pages", type=int, default=200, help="Pages of the second site (default: 200).")
    parser.add_argument("--review-labels", type=int, default=90, help="New labels on its passages (default: 90).")
    parser.add_argument("--review-seed", type=int, default=2026, help="Seed of the review site (default: 2026).")
    parser.add_argument(
        "--registry",
        default=None,
        help="Data directory to keep the first run's versions in (reused when they are there); default: scratch.",
    )
    parser.add_argument("--first-only", action="store_true", help="Time the first run only.")
    args = parser.parse_args(argv)
    args.targets = [target.strip() for target in args.targets.split(",") if target.strip()]
    if not args.targets:
        parser.error("--targets: none given")
    return args


def main() -> int:
    logs.configure("bench-run-time")  # progress events as JSON lines on stderr, as in the trainer
    print(run(parse_args()).table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
