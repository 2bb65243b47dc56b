"""Real faults for tests: kill a local service hard and keep it down, then start it again.

Every fault test goes through these two functions, so that how a service is kept alive
(pid files today, a supervisor that would restart a killed process at once) is handled
in one place: `kill_service` leaves the service down until `start_service`.
"""

from __future__ import annotations

import os
import signal
import time

from ctrlgpt.settings import Settings
from deploy import processes
from deploy.services import SERVICES, Service


def service(name: str) -> Service:
    for candidate in SERVICES:
        if candidate.name == name:
            return candidate
    raise KeyError(f"no service named {name!r}; known: {[s.name for s in SERVICES]}")


def kill_service(settings: Settings, name: str) -> int:
    """SIGKILL the service's process group (no clean shutdown) and keep it down; returns the pid killed."""
    pid = processes.running_pid(settings, name)
    if pid is None:
        raise RuntimeError(f"{name} is not running")
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
            try:
                os.waitpid(pid, os.WNOHANG)  # reap it if it was our child
            except ChildProcessError:
                pass
        except ProcessLookupError:
            break
        time.sleep(0.1)
    processes.pid_file(settings, name).unlink(missing_ok=True)
    return pid


def start_service(settings: Settings, name: str, timeout: float | None = None) -> None:
    """Start the service again and wait until it answers."""
    wanted = service(name)
    wanted.start(settings)
    processes.wait_until(
        lambda: wanted.ready(settings), what=name, timeout=timeout or wanted.ready_timeout_s, interval=0.5
    )
