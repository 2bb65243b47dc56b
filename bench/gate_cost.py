"""Gate cost benchmark: how long the gate of a tiny two-target run takes, from the run's own progress events.

    .venv/bin/python bench/gate_cost.py [--articles N] [--targets positive,negative] [--seed S]

No services needed. One `pipeline.train` run, as the worker calls it, on the demo site's articles with every
paragraph labelled with its article's sentiment (`learning.demo_records`), the pipeline's own stage functions
and settings (env `CTRLGPT_*` apply, e.g. `CTRLGPT_GATE_HELDOUT_PROMPTS`), shortened where the gate does not
care (SFT and reward epochs, RL episodes). Each progress event is stamped as it is published; per target, the
gate is the time from its "gate target=..." event to its verdict, and the control gap the time from the last
verdict to the gap's figures, each as wall time and as this process's CPU time (`time.process_time`, all its
threads). On a shared machine the wall time moves with the load (`os.getloadavg`, printed with the figures);
the CPU time much less, so compare runs by it.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from learning import demo_records
from machine import describe as describe_machine
from report import Report

from ctrlgpt import logs
from ctrlgpt.settings import Settings
from deploy.demo_site import load_articles
from streams.records import TrainingRunProgressed
from trainer import pipeline
from trainer.progress import ProgressReporter
from trainer.run_config import RunConfig
from trainer.steering import Offsets

Stamped = tuple[float, TrainingRunProgressed]  # a clock's reading when the event was published


def gate_seconds(events: Sequence[Stamped], targets: Sequence[str]) -> dict[str, float]:
    """Seconds per target from its "gate target=<t>" event to its verdict ("target=<t> <outcome>: ..."), and
    "control_gap": from the last verdict to the next gate event (the run's control gap), when there is one."""
    seconds: dict[str, float] = {}
    started: dict[str, float] = {}
    last_verdict = None
    for at, event in events:
        if event.stage != "gate":
            continue
        for target in targets:
            if event.message == f"target={target}":
                started[target] = at
            elif event.message.startswith(f"target={target} ") and target in started:
                seconds[target] = at - started[target]
                last_verdict = at
        if last_verdict is not None and len(seconds) == len(targets) and not event.message.startswith("target="):
            seconds["control_gap"] = at - last_verdict
    return seconds


def run(args: argparse.Namespace) -> Report:
    report = Report()
    report.add("machine", describe_machine())
    report.add("load average before (1, 5, 15 min)", ", ".join(f"{load:.2f}" for load in os.getloadavg()))
    pages, labels = demo_records(load_articles()[: args.articles])
    with tempfile.TemporaryDirectory(prefix="ctrlgpt-gate-cost-") as work:
        settings = Settings().model_copy(
            update={
                "data_dir": Path(work),
                "targets": ",".join(args.targets),
                "target_sentiment": args.targets[0],
                "sft_epochs": args.sft_epochs,
                "reward_epochs": args.reward_epochs,
                "ppo_episodes": args.episodes,
                "seed": args.seed,
            }
        )
        config = RunConfig.from_settings(settings)
        events: list[Stamped] = []
        cpu_events: list[Stamped] = []

        def stamp(event: TrainingRunProgressed) -> None:
            events.append((time.perf_counter(), event))
            cpu_events.append((time.process_time(), event))

        reporter = ProgressReporter("gate-cost", stamp)
        started, started_cpu = time.perf_counter(), time.process_time()
        outcomes = pipeline.train(
            config, "gate-cost", pages, labels, reporter=reporter, offsets=Offsets({"0": len(labels)}, {})
        )
        wall, run_cpu = time.perf_counter() - started, time.process_time() - started_cpu
    seconds, cpu = gate_seconds(events, args.targets), gate_seconds(cpu_events, args.targets)
    report.add(
        "held-out prompts x samples per prompt",
        f"{config.heldout_prompts} x {config.samples_per_prompt} per policy",
    )
    for name in [*args.targets, "control_gap"]:
        if name in seconds:
            what = "control gap" if name == "control_gap" else f"gate, target={name}"
            report.add(
                what,
                f"{seconds[name]:.1f} s wall, {cpu[name]:.1f} s CPU",
                **{f"{name}_s": seconds[name], f"{name}_cpu_s": cpu[name]},
            )
    total, total_cpu = sum(seconds.values()), sum(cpu.values())
    report.add(
        "gate in all",
        f"{total:.1f} s wall, {total_cpu:.1f} s CPU, of a run of {wall:.1f} s wall, {run_cpu:.1f} s CPU",
        gate_s=total,
        gate_cpu_s=total_cpu,
        run_s=wall,
        run_cpu_s=run_cpu,
    )
    report.add("outcomes", ", ".join(f"{outcome.target}: {outcome.status}" for outcome in outcomes))
    report.add("load average after (1, 5, 15 min)", ", ".join(f"{load:.2f}" for load in os.getloadavg()))
    return report


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--articles", type=int, default=30, help="Demo site articles to train on (default: all 30).")
    parser.add_argument("--targets", default="positive,negative", help="Comma-separated targets, the anchor first.")
    parser.add_argument("--sft-epochs", type=float, default=1.0, help="SFT epochs (default: 1).")
    parser.add_argument("--reward-epochs", type=float, default=1.0, help="Reward epochs (default: 1).")
    parser.add_argument("--episodes", type=int, default=16, help="RL episodes per target (default: 16).")
    parser.add_argument("--seed", type=int, default=Settings().seed, help="Seed (default: setting).")
    args = parser.parse_args(argv)
    args.targets = [target.strip() for target in args.targets.split(",") if target.strip()]
    if not args.targets:
        parser.error("--targets: none given")
    return args


def main() -> int:
    logs.configure("bench-gate-cost")  # progress events as JSON lines on stderr, as in the trainer
    print(run(parse_args()).table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
