"""supervisord event listener: the restart count and last exit of every program; FATAL ones revived.

supervisord counts no restarts and forgets how a process ended (it only logs it). This
listener is told of every state change (PROCESS_STATE events), including the ones that
happen between two `ctrlgpt status` calls (a crash loop of five restarts in a second),
which polling `getProcessInfo` would miss; that is why the count is kept here. The
history lives in `<data_dir>/run/process-history.json`, written atomically, so that it
survives a restart of this listener or of supervisord.

supervisord gives up on a program that keeps failing to start (FATAL) and never tries
again; unattended, a worker whose dependency was away for longer than its back-off would
stay dead for good. So this listener starts a FATAL program again after a cool-down
(`supervise_fatal_retry_s`), and counts that start as a restart.

    python -m deploy.supervisor_events HISTORY_JSON SUPERVISORD_LOG FATAL_RETRY_S   (run by supervisord)
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
import xmlrpc.client
from pathlib import Path
from typing import Any

from supervisor import childutils

__all__ = ["ProgramHistory", "exit_message", "read_history", "record"]

ProgramHistory = dict[str, Any]  # {"restarts": int, "last_exit": {"how", "expected", "at"} | None}

# supervisord's automatic starts: after a crash (EXITED) or a failed start (BACKOFF).
# A start from STOPPED or FATAL is a person's (or `ctrlgpt`'s) and is no restart.
_RESTART_FROM = {"EXITED", "BACKOFF"}
_ENDED = {"PROCESS_STATE_EXITED", "PROCESS_STATE_BACKOFF", "PROCESS_STATE_STOPPED"}
_LOG_TAIL_BYTES = 64 * 1024


def record(
    history: dict[str, ProgramHistory],
    event: str,
    fields: dict[str, str],
    how: str | None,
    now: float,
    *,
    revived: bool = False,
) -> dict[str, ProgramHistory]:
    """The history after one PROCESS_STATE event of supervisord (pure).

    `revived`: this listener started the program again after FATAL (a restart too).
    """
    name = fields["processname"]
    entry = dict(history.get(name) or {"restarts": 0, "last_exit": None})
    from_state = fields.get("from_state")
    if event == "PROCESS_STATE_STARTING" and (from_state in _RESTART_FROM or (from_state == "FATAL" and revived)):
        entry["restarts"] += 1
    elif event in _ENDED:
        entry["last_exit"] = {
            "how": how or "unknown",
            "expected": event == "PROCESS_STATE_STOPPED" or fields.get("expected") == "1",
            "at": now,
            "state": event.removeprefix("PROCESS_STATE_"),
        }
    return {**history, name: entry}


def exit_message(log_tail: str, name: str) -> str | None:
    """How `name` last ended, from supervisord's own log line ("terminated by SIGKILL", "exit status 1")."""
    found = re.findall(rf"(?:exited|stopped): {re.escape(name)} \((.*?)(?:; (?:not )?expected)?\)\s*$", log_tail, re.M)
    return found[-1] if found else None


def read_history(path: Path) -> dict[str, ProgramHistory]:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return {}


def _write_history(path: Path, history: dict[str, ProgramHistory]) -> None:
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(history, indent=1, sort_keys=True))
    os.replace(partial, path)


def _log_tail(path: Path) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(max(0, handle.seek(0, os.SEEK_END) - _LOG_TAIL_BYTES))
            return handle.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def _revive_later(name: str, delay_s: float, revived: set[str]) -> None:
    def start() -> None:
        revived.add(name)
        try:
            childutils.getRPCInterface(os.environ).supervisor.startProcess(name, False)
        except (OSError, xmlrpc.client.Error) as exc:  # stopped or removed meanwhile: nothing to revive
            revived.discard(name)
            print(f"{name} not revived: {exc!r}", file=sys.stderr, flush=True)

    timer = threading.Timer(delay_s, start)
    timer.daemon = True
    timer.start()


def main(history_path: str, supervisord_log: str, fatal_retry_s: str) -> None:
    history_file, log_path, retry_after = Path(history_path), Path(supervisord_log), float(fatal_retry_s)
    revived: set[str] = set()  # names this listener started again after FATAL, until their STARTING event
    while True:
        headers, payload = childutils.listener.wait(sys.stdin, sys.stdout)
        try:
            fields = childutils.get_headers(payload.split("\n", 1)[0])
            event, name = headers["eventname"], fields["processname"]
            how = exit_message(_log_tail(log_path), name) if event in _ENDED else None
            was_revived = event == "PROCESS_STATE_STARTING" and fields.get("from_state") == "FATAL" and name in revived
            if event == "PROCESS_STATE_STARTING":
                revived.discard(name)
            _write_history(
                history_file, record(read_history(history_file), event, fields, how, time.time(), revived=was_revived)
            )
            if event == "PROCESS_STATE_FATAL" and retry_after > 0:
                _revive_later(name, retry_after, revived)
        except Exception as exc:
            print(f"event not recorded: {exc!r}", file=sys.stderr, flush=True)
        childutils.listener.ok(sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3])
