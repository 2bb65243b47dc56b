"""The supervisord of a data directory: started when missing, driven over its unix socket.

supervisord keeps every long-running process alive (restarts with back-off, logs
rotated by size); ctrlgpt talks to it through supervisor's own XML-RPC client on the
owner-only socket `<data_dir>/run/supervisord.sock`, never an inet port.

`ctrlgpt stop` shuts it down over that socket. Only when the socket does not answer does
it fall back to a signal, and then only to the process recorded at start: same pid
*and* same start time (psutil), so a stale pid file (after a reboot, say) never gets an
unrelated process signalled.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import xmlrpc.client
from pathlib import Path

import psutil
import structlog
from supervisor.xmlrpc import SupervisorTransport

from ctrlgpt.settings import Settings
from deploy import supervisor_config
from deploy.supervisor_config import Layout, layout

__all__ = [
    "Fault",
    "NotRunning",
    "answering",
    "ensure_running",
    "program_spec_path",
    "recorded_process",
    "rpc",
    "shutdown",
]

log = structlog.get_logger()

Fault = xmlrpc.client.Fault
STARTED_FILE = "supervisord.started.json"  # pid and start time of the supervisord we started
_START_TIMEOUT_S = 30.0


class NotRunning(RuntimeError):
    """No supervisord answers on this data directory's socket."""


def rpc(settings: Settings) -> xmlrpc.client.ServerProxy:
    """supervisor's XML-RPC interface over the data directory's unix socket (supervisor's own transport)."""
    paths = layout(settings)
    # The URL is a placeholder: the transport connects to `serverurl`, the socket.
    return xmlrpc.client.ServerProxy("http://127.0.0.1", SupervisorTransport(None, None, paths.server_url))


def answering(settings: Settings) -> bool:
    paths = layout(settings)
    if not paths.socket.exists():
        return False
    try:
        return rpc(settings).supervisor.getState()["statename"] == "RUNNING"
    except (OSError, xmlrpc.client.Error):
        return False


def ensure_running(settings: Settings) -> None:
    """Start this data directory's supervisord unless it answers already."""
    if answering(settings):
        return
    paths = layout(settings)
    _stop_recorded(paths, timeout=30.0)  # one that no longer answers: ours only, by pid and start time
    paths.programs_dir.mkdir(parents=True, exist_ok=True)
    paths.logs_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(paths.run_dir, 0o700)
    paths.socket.unlink(missing_ok=True)  # left by a supervisord that died: it would refuse to bind
    paths.conf.write_text(supervisor_config.supervisord_conf(settings))
    (paths.programs_dir / f"{supervisor_config.LISTENER}.conf").write_text(supervisor_config.listener_conf(settings))
    paths.history.unlink(missing_ok=True)  # restarts are counted per supervisord
    # Daemonized: the first process exits once the daemon runs, so nobody is left a zombie of ours.
    daemon = subprocess.run(
        [sys.executable, "-m", "supervisor.supervisord", "-c", str(paths.conf)],
        check=False,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        start_new_session=True,
    )
    if daemon.returncode != 0:
        raise NotRunning(f"supervisord did not start: {daemon.stdout[-2000:]}{daemon.stderr[-2000:]}")
    deadline = time.monotonic() + _START_TIMEOUT_S
    while not answering(settings):
        if time.monotonic() > deadline:
            raise NotRunning(f"supervisord did not answer on {paths.socket}; see {paths.logs_dir / 'supervisord.log'}")
        time.sleep(0.1)
    pid = int(rpc(settings).supervisor.getPID())
    (paths.run_dir / STARTED_FILE).write_text(
        json.dumps({"pid": pid, "create_time": psutil.Process(pid).create_time()})
    )
    log.info("supervisord.started", pid=pid, socket=str(paths.socket))


def shutdown(settings: Settings, timeout: float = 120.0) -> bool:
    """Stop supervisord (it stops its programs first); True if one was running."""
    paths = layout(settings)
    if not answering(settings):
        return _stop_recorded(paths, timeout)
    pid = int(rpc(settings).supervisor.getPID())
    rpc(settings).supervisor.shutdown()
    _wait_gone(pid, timeout)
    (paths.run_dir / STARTED_FILE).unlink(missing_ok=True)
    log.info("supervisord.stopped", pid=pid)
    return True


def recorded_process(paths: Layout) -> psutil.Process | None:
    """The supervisord we started, if it still lives: the pid recorded and its start time must both match."""
    try:
        started = json.loads((paths.run_dir / STARTED_FILE).read_text())
        process = psutil.Process(int(started["pid"]))
        if abs(process.create_time() - float(started["create_time"])) > 0.01:
            return None  # the pid was reused by another process since
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return process
    except (FileNotFoundError, ValueError, KeyError, psutil.NoSuchProcess):
        return None


def _stop_recorded(paths: Layout, timeout: float) -> bool:
    process = recorded_process(paths)
    (paths.run_dir / STARTED_FILE).unlink(missing_ok=True)
    if process is None:
        return False
    log.warning("supervisord.not_answering", pid=process.pid)
    process.send_signal(signal.SIGTERM)
    if not _gone(process, timeout):
        process.kill()
    return True


def _wait_gone(pid: int, timeout: float) -> None:
    try:
        _gone(psutil.Process(pid), timeout)
    except psutil.NoSuchProcess:
        pass


def _gone(process: psutil.Process, timeout: float) -> bool:
    """Whether it ended within `timeout`; a zombie has ended (its parent, not us, reaps it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


def program_spec_path(settings: Settings, name: str) -> Path:
    return layout(settings).programs_dir / f"{name}.launch.json"
