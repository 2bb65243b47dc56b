"""Background processes of the one-machine deployment: started detached, found again by pid file.

Each process has a name; its pid lives in `<data_dir>/run/<name>.pid` and its output
in `<data_dir>/logs/<name>.log`, so `ctrlgpt stop` (or a second `ctrlgpt demo`) finds
what an earlier command started. Starting a name that is already running does nothing.
"""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import structlog

from ctrlgpt.settings import Settings

log = structlog.get_logger()


def pid_file(settings: Settings, name: str) -> Path:
    return settings.data_dir / "run" / f"{name}.pid"


def log_file(settings: Settings, name: str) -> Path:
    return settings.logs_dir / f"{name}.log"


def running_pid(settings: Settings, name: str) -> int | None:
    path = pid_file(settings, name)
    try:
        pid = int(path.read_text().strip())
        os.kill(pid, 0)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None
    except PermissionError:  # alive, owned by another user (Elasticsearch's)
        return pid
    return pid


def start(
    settings: Settings,
    name: str,
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    user: str | None = None,
) -> int:
    """Start `argv` in the background unless `name` already runs; returns its pid.

    `user`: run as this system user (with its primary group only), for servers that refuse root.
    """
    pid = running_pid(settings, name)
    if pid is not None:
        log.info("process.already_running", name=name, pid=pid)
        return pid
    pid_path, log_path = pid_file(settings, name), log_file(settings, name)
    pid_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as out:
        process = subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            env={**os.environ, **(env or {})},
            start_new_session=True,  # its own process group: stop() ends it with its children
            user=user,
            group=_primary_group(user) if user else None,
            extra_groups=[] if user else None,
        )
    pid_path.write_text(str(process.pid))
    log.info("process.started", name=name, pid=process.pid, log=str(log_path))
    return process.pid


def _primary_group(user: str) -> int:
    return pwd.getpwnam(user).pw_gid


def ctrlgpt_command(*args: str) -> list[str]:
    """argv that runs a ctrlgpt sub-command with this interpreter."""
    return [sys.executable, "-m", "ctrlgpt.cli", *args]


def stop(settings: Settings, name: str, timeout: float = 30.0) -> bool:
    """SIGTERM the process group, SIGKILL after `timeout`; True if something was running."""
    pid = running_pid(settings, name)
    if pid is None:
        pid_file(settings, name).unlink(missing_ok=True)
        return False
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.2)
    if _alive(pid):
        log.warning("process.kill", name=name, pid=pid)
        _signal_group(pid, signal.SIGKILL)
    pid_file(settings, name).unlink(missing_ok=True)
    log.info("process.stopped", name=name, pid=pid)
    return True


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours still answers kill(0); reap it if it is ours.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def wait_until(check: Callable[[], bool], *, what: str, timeout: float, interval: float = 1.0) -> None:
    """Poll `check` until it is true; raise TimeoutError naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(interval)
    raise TimeoutError(f"{what} did not become ready within {timeout:.0f}s")
