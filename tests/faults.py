"""Real faults for tests: kill a local service hard and keep it down, then start it again.

Every fault test goes through these functions, so that how a service is kept alive
(supervisord, which restarts a killed process at once) is handled in one place:
`kill_service` leaves the service down until `start_service`; `kill_worker` kills a
supervised worker and lets supervisord bring it back, as a crash in production would.
"""

from __future__ import annotations

import os
import signal

from ctrlgpt.settings import Settings
from deploy import processes, services, supervisor
from deploy.services import Service


def service(settings: Settings, name: str) -> Service:
    known = services.of(settings)
    for candidate in known:
        if candidate.name == name:
            return candidate
    raise KeyError(f"no service named {name!r}; known: {[s.name for s in known]}")


def kill_service(settings: Settings, name: str) -> int:
    """SIGKILL the service's process group (no clean shutdown) and keep it down; returns the pid killed.

    supervisord restarts a process that dies unasked. So the group is frozen first (SIGSTOP:
    it can run no SIGTERM handler), then supervisord is asked to stop it (which marks the
    exit as wanted, so no restart; its SIGTERM stays pending in the frozen processes), then
    SIGKILL ends the group before that SIGTERM is ever handled.
    """
    pid = processes.running_pid(settings, name)
    if pid is None:
        raise RuntimeError(f"{name} is not running")
    _signal_group(pid, signal.SIGSTOP)
    supervisor.rpc(settings).supervisor.stopProcess(name, False)
    _signal_group(pid, signal.SIGKILL)
    processes.wait_until(
        lambda: processes.info(settings, name)["statename"] == "STOPPED",
        what=f"{name} killed",
        timeout=30,
        interval=0.1,
    )
    return pid


def start_service(settings: Settings, name: str, timeout: float | None = None) -> None:
    """Start the service again and wait until it answers."""
    wanted = service(settings, name)
    wanted.start(settings)
    processes.wait_until(
        lambda: wanted.ready(settings), what=name, timeout=timeout or wanted.ready_timeout_s, interval=0.5
    )


def kill_worker(settings: Settings, name: str) -> int:
    """SIGKILL a supervised worker's process group, as a crash would; supervisord restarts it. Returns the pid killed."""
    pid = processes.running_pid(settings, name)
    if pid is None:
        raise RuntimeError(f"{name} is not running")
    _signal_group(pid, signal.SIGKILL)
    return pid


def wait_restarted(settings: Settings, name: str, killed_pid: int, timeout: float = 10.0) -> int:
    """The new pid of a worker that supervisord restarted after `killed_pid` died."""
    processes.wait_until(
        lambda: processes.running_pid(settings, name) not in (None, killed_pid),
        what=f"{name} restarted",
        timeout=timeout,
        interval=0.1,
    )
    return processes.running_pid(settings, name)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
