"""`ctrlgpt status`: every service and worker of this data directory, as its supervisord sees it.

One line each: state (up, starting, backoff, fatal, down), pid, restarts, since when,
and how it last ended (exit code or signal) and when. Exits 1 when any is not up.
The services are always listed (they are always wanted); a worker is listed once
something started it, until `ctrlgpt stop` (or `stop_workers`) drops it.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ctrlgpt.settings import Settings
from deploy import services, supervisor, supervisor_config
from deploy.supervisor_events import ProgramHistory, read_history
from deploy.workers import WORKERS

__all__ = ["ProgramStatus", "format_status", "main", "program_statuses"]

_STATES = {"RUNNING": "up", "STARTING": "starting", "BACKOFF": "backoff", "FATAL": "fatal"}


@dataclass(frozen=True)
class ProgramStatus:
    name: str
    state: str
    pid: int | None
    restarts: int
    since: float | None
    last_exit: Mapping[str, Any] | None
    detail: str = ""

    @property
    def up(self) -> bool:
        return self.state == "up"


def program_statuses(
    infos: Iterable[Mapping[str, Any]], history: Mapping[str, ProgramHistory], always: Iterable[str]
) -> list[ProgramStatus]:
    """Pure: supervisord's process infos and the listener's history -> one status per program."""
    by_name = {info["name"]: info for info in infos if info["name"] != supervisor_config.LISTENER}
    order = [*always, *(name for name in WORKERS if name in by_name)]
    order += sorted(name for name in by_name if name not in order)
    statuses = []
    for name in order:
        info, past = by_name.get(name), history.get(name) or {}
        if info is None:
            statuses.append(
                ProgramStatus(name, "down", None, past.get("restarts", 0), None, past.get("last_exit"), "not started")
            )
            continue
        state = _STATES.get(info["statename"], "down")
        since = info["start"] if state in ("up", "starting") else (info["stop"] or None)
        statuses.append(
            ProgramStatus(
                name=name,
                state=state,
                pid=info["pid"] or None,
                restarts=past.get("restarts", 0),
                since=since or None,
                last_exit=past.get("last_exit"),
                detail=info["spawnerr"] if state != "up" else "",
            )
        )
    return statuses


def _when(timestamp: float | None) -> str:
    if not timestamp:
        return "-"
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_status(statuses: Iterable[ProgramStatus]) -> list[str]:
    lines = [f"{'NAME':<14} {'STATE':<9} {'PID':<8} {'RESTARTS':<8} {'SINCE':<20} LAST EXIT"]
    for status in statuses:
        ended = status.last_exit
        last = f"{ended['how']} at {_when(ended['at'])}" if ended else "-"
        line = f"{status.name:<14} {status.state:<9} {status.pid or '-':<8} {status.restarts:<8} {_when(status.since):<20} {last}"
        lines.append(line + (f"  ({status.detail})" if status.detail else ""))
    return lines


def current(settings: Settings) -> list[ProgramStatus]:
    infos = supervisor.rpc(settings).supervisor.getAllProcessInfo() if supervisor.answering(settings) else []
    history = read_history(supervisor_config.layout(settings).history)
    return program_statuses(infos, history, [service.name for service in services.of(settings)])


def main(settings: Settings, args: argparse.Namespace) -> int:
    statuses = current(settings)
    if not supervisor.answering(settings):
        print(f"supervisord is not running for {settings.data_dir} (start it with `ctrlgpt services up`)")
    print("\n".join(format_status(statuses)))
    return 0 if all(status.up for status in statuses) else 1
