"""Background processes of the one-machine deployment, kept alive by supervisord.

Each process has a name; `start` adds it to this data directory's supervisord (started
when missing, see deploy/supervisor.py) and starts it there. From then on supervisord
restarts it when it dies (at once after a crash, with growing back-off when it keeps
failing to start) and writes its output to `<data_dir>/logs/<name>.log`, rotated by
size. Starting a name that is already running does nothing; `stop` stops it and drops
it from supervisord, so that a process nobody wants any more is not reported as down.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import structlog

from ctrlgpt.settings import Settings
from deploy import supervisor, supervisor_config

log = structlog.get_logger()

# supervisord's states in which a process is there (STARTING: up, not yet past startsecs).
LIVE_STATES = {"STARTING", "RUNNING"}
# supervisor.xmlrpc.Faults
_BAD_NAME = 10  # no such program
_ALREADY_STARTED = 60
_ALREADY_ADDED = 90
_PID_TIMEOUT_S = 10.0


def log_file(settings: Settings, name: str) -> Path:
    return settings.logs_dir / f"{name}.log"


def info(settings: Settings, name: str) -> dict[str, Any] | None:
    """supervisord's process info for `name`, or None when supervisord or the program is not there."""
    if not supervisor.answering(settings):
        return None
    try:
        return supervisor.rpc(settings).supervisor.getProcessInfo(name)
    except supervisor.Fault as fault:
        if fault.faultCode == _BAD_NAME:
            return None
        raise


def running_pid(settings: Settings, name: str) -> int | None:
    process = info(settings, name)
    if process is None or process["statename"] not in LIVE_STATES or not process["pid"]:
        return None
    return int(process["pid"])


def start(
    settings: Settings,
    name: str,
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    user: str | None = None,
    stop_signal: str = "TERM",
) -> int:
    """Start `argv` under supervisord unless `name` already runs; returns its pid.

    It runs with this process's environment plus `env`, in `cwd` (default: this process's,
    not supervisord's), as system user `user` (with its primary group only) when given,
    for servers that refuse root. `stop_signal`: what asks it to stop (PostgreSQL's fast
    shutdown is INT; its TERM waits for every client to leave).
    """
    pid = running_pid(settings, name)
    if pid is not None:
        log.info("process.already_running", name=name, pid=pid)
        return pid
    supervisor.ensure_running(settings)
    paths = supervisor_config.layout(settings)
    spec = supervisor.program_spec_path(settings, name)
    # Owner-only: the environment may carry secrets (doccano's SECRET_KEY).
    with os.fdopen(os.open(spec, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as handle:
        json.dump(
            {"argv": list(argv), "env": {**os.environ, **(env or {})}, "cwd": str(cwd or Path.cwd()), "user": user},
            handle,
        )
    (paths.programs_dir / f"{name}.conf").write_text(
        supervisor_config.program_conf(settings, name, spec, stop_signal=stop_signal)
    )
    server = supervisor.rpc(settings).supervisor
    added, changed, _removed = server.reloadConfig()[0]
    if name in changed:  # new log or restart settings: the group is rebuilt (it is not running)
        server.removeProcessGroup(name)
    try:
        if name in added or name in changed:
            server.addProcessGroup(name)
        server.startProcess(name, False)  # no wait: readiness is each service's own check
    except supervisor.Fault as fault:
        if fault.faultCode not in (_ALREADY_ADDED, _ALREADY_STARTED):  # another `ctrlgpt` started it meanwhile
            raise
    pid = _wait_for_pid(settings, name)
    log.info("process.started", name=name, pid=pid, log=str(log_file(settings, name)))
    return pid


def _wait_for_pid(settings: Settings, name: str) -> int:
    deadline = time.monotonic() + _PID_TIMEOUT_S
    while True:
        process = info(settings, name)
        if process is not None and process["pid"]:
            return int(process["pid"])
        if process is not None and process["statename"] in ("FATAL", "BACKOFF", "EXITED"):
            raise RuntimeError(
                f"{name} did not start ({process['spawnerr'] or process['statename']}); see {log_file(settings, name)}"
            )
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} got no pid from supervisord within {_PID_TIMEOUT_S:.0f}s")
        time.sleep(0.05)


def ctrlgpt_command(*args: str) -> list[str]:
    """argv that runs a ctrlgpt sub-command with this interpreter."""
    return [sys.executable, "-m", "ctrlgpt.cli", *args]


def stop(settings: Settings, name: str, timeout: float = 30.0) -> bool:
    """Stop it through supervisord (its stop signal to the process group), SIGKILL the group after `timeout`;
    then drop it from supervisord.

    True if something was running.
    """
    process = info(settings, name)
    if process is None:
        return False
    server = supervisor.rpc(settings).supervisor
    was_running = process["statename"] in LIVE_STATES | {"BACKOFF", "STOPPING"}
    if process["statename"] in LIVE_STATES | {"BACKOFF"}:
        server.stopProcess(name, False)
    deadline = time.monotonic() + timeout
    while (process := info(settings, name)) is not None and process["statename"] == "STOPPING":
        if time.monotonic() > deadline:
            log.warning("process.kill", name=name, pid=process["pid"])
            # The whole group, as supervisord's own kill would: its pid is supervisord's child, still STOPPING.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process["pid"], signal.SIGKILL)
            deadline = float("inf")
        time.sleep(0.1)
    server.removeProcessGroup(name)
    for path in (
        supervisor_config.layout(settings).programs_dir / f"{name}.conf",
        supervisor.program_spec_path(settings, name),
    ):
        path.unlink(missing_ok=True)
    if was_running:
        log.info("process.stopped", name=name)
    return was_running


def wait_until(check: Callable[[], bool], *, what: str, timeout: float, interval: float = 1.0) -> None:
    """Poll `check` until it is true; raise TimeoutError naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(interval)
    raise TimeoutError(f"{what} did not become ready within {timeout:.0f}s")
