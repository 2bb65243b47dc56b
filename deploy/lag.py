"""`ctrlgpt lag`: consumer lag per group, topic and partition, with Burrow-style status.

    ctrlgpt lag                          # groups matching ops_groups, 3 samples 2 s apart
    ctrlgpt lag --group ctrlgpt-index    # one group (repeatable)
    ctrlgpt lag --watch                  # keep sampling; the window slides
    ctrlgpt lag --samples 5 --interval 1 --json

Exit status, the monitoring-plugin convention (Nagios, Icinga, Sensu, cron wrappers):
0 every group OK, 1 a group WARN, 2 a group in error (Burrow's ERR: a partition STOP,
STALL or REWIND), 3 unknown (Kafka cannot be read).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading

import structlog

from ctrlgpt.lifecycle import stop_on_signals
from ctrlgpt.settings import Settings
from streams.bus import ServiceUnavailable
from streams.consumer_lag import GroupLag, LagTracker, Status
from streams.offsets import OffsetsReader

__all__ = ["exit_status", "format_duration", "format_report", "main", "report_json"]

log = structlog.get_logger()

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3  # the monitoring-plugin exit statuses


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def format_report(groups: list[GroupLag]) -> str:
    """A plain-text table per group; "never" drains: the lag is not shrinking at the window's rates."""
    if not groups:
        return "no consumer group with committed offsets matches"
    lines: list[str] = []
    for group in groups:
        lines.append(
            f"{group.group}: {group.status.value} (Burrow: {group.burrow_status}), state {group.state}, "
            f"{group.members} members, lag {group.total_lag}, drains in {format_duration(group.time_to_drain_s)}"
        )
        rows = [("topic", "partition", "committed", "end", "lag", "status", "drains in")]
        rows += [
            (
                p.topic,
                str(p.partition),
                str(p.committed),
                str(p.end),
                str(p.lag),
                p.status.value,
                format_duration(p.time_to_drain_s),
            )
            for p in group.partitions
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines += ["  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
        lines += [
            f"  {p.topic}[{p.partition}] {p.status.value}: {p.reason}"
            for p in group.partitions
            if p.status is not Status.OK
        ]
    return "\n".join(lines)


def report_json(groups: list[GroupLag]) -> list[dict]:
    return [group.as_dict() for group in groups]


def sample(
    reader: OffsetsReader, tracker: LagTracker, *, samples: int, interval: float, stop: threading.Event
) -> list[GroupLag]:
    """Take `samples` snapshots `interval` seconds apart (fewer if stopped); the evaluation after the last."""
    evaluation: list[GroupLag] = []
    for index in range(samples):
        if index and stop.wait(interval):
            break
        evaluation = tracker.add(reader.read())
    return evaluation


def main(settings: Settings, args: argparse.Namespace) -> int:
    if args.samples < 1 or args.interval <= 0:
        print("ctrlgpt lag: --samples must be at least 1 and --interval above 0", file=sys.stderr)
        return UNKNOWN
    stop = stop_on_signals()
    reader = OffsetsReader(
        settings.kafka_bootstrap,
        group_pattern=settings.ops_groups,
        groups=args.group,
        timeout_s=settings.ops_kafka_timeout_s,
    )
    tracker = LagTracker(window=args.samples, stop_after_s=settings.lag_stop_after_s, history=2)
    try:
        groups = sample(reader, tracker, samples=args.samples, interval=args.interval, stop=stop)
        _print(groups, as_json=args.json)
        while args.watch and not stop.wait(args.interval):
            groups = tracker.add(reader.read())
            _print(groups, as_json=args.json)
    except ServiceUnavailable as exc:
        log.error("lag.kafka_unavailable", error=str(exc))
        return UNKNOWN
    return exit_status(groups)


def exit_status(groups: list[GroupLag]) -> int:
    """The worst group's, as a monitoring plugin reports it (no group: OK)."""
    statuses = {g.burrow_status for g in groups}
    return CRITICAL if "ERR" in statuses else WARNING if "WARN" in statuses else OK


def _print(groups: list[GroupLag], *, as_json: bool) -> None:
    print(json.dumps(report_json(groups)) if as_json else format_report(groups) + "\n", flush=True)
