"""supervisord keeps processes alive, counts restarts, rotates logs; `ctrlgpt stop` signals only its own.

Real processes under the stack's supervisord (started when missing); each test's programs
have names of their own and are dropped from supervisord at the end.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import psutil
import pytest

from ctrlgpt.settings import Settings
from deploy import processes, services, status, supervisor
from deploy.services import Service
from tests import faults

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def program(settings):
    """Start programs under test-only names; stops and drops them afterwards."""
    started: list[str] = []

    def start(name: str, argv: list[str], program_settings=None, **kwargs) -> int:
        started.append(name)
        return processes.start(program_settings or settings, name, argv, **kwargs)

    yield start
    for name in started:
        processes.stop(settings, name, timeout=10)
        for log in settings.logs_dir.glob(f"{name}.log*"):
            log.unlink()


def _status_of(settings, name: str) -> status.ProgramStatus:
    return next(entry for entry in status.current(settings) if entry.name == name)


def _ctrlgpt_status() -> subprocess.CompletedProcess:
    return subprocess.run(processes.ctrlgpt_command("status"), capture_output=True, text=True, timeout=60, check=False)


def test_worker_killed_with_sigkill_is_restarted_with_a_new_pid_and_status_shows_it(settings, program):
    name = "test-supervised-demo-site"
    env = {"CTRLGPT_DEMO_SITE_PORT": str(_free_port())}
    program(name, processes.ctrlgpt_command("demo-site"), env=env)
    # Past supervisord's startsecs: a kill now is a crash of a running worker, not a failed start.
    processes.wait_until(
        lambda: processes.info(settings, name)["statename"] == "RUNNING", what=name, timeout=30, interval=0.2
    )

    restarts_before = _status_of(settings, name).restarts  # the history lives as long as supervisord
    killed = faults.kill_worker(settings, name)
    restarted = faults.wait_restarted(settings, name, killed, timeout=10)

    assert restarted != killed
    assert _ended(killed)
    processes.wait_until(
        lambda: _status_of(settings, name).restarts == restarts_before + 1,
        what="restart recorded",
        timeout=10,
        interval=0.2,
    )
    entry = _status_of(settings, name)
    assert entry.pid == restarted
    assert entry.last_exit["how"] == "terminated by SIGKILL"
    assert entry.last_exit["expected"] is False
    processes.wait_until(
        lambda: processes.info(settings, name)["statename"] == "RUNNING", what=name, timeout=30, interval=0.2
    )
    line = next(line for line in _ctrlgpt_status().stdout.splitlines() if line.startswith(name))
    assert line.split()[:4] == [name, "up", str(restarted), str(restarts_before + 1)]
    assert "terminated by SIGKILL" in line


def test_program_that_crashes_at_once_ends_fatal_and_status_fails_naming_it(settings, program):
    name = "test-supervised-crasher"
    quick_to_give_up = settings.model_copy(update={"supervise_start_retries": 1, "supervise_start_s": 1})
    program(name, [sys.executable, "-c", "raise SystemExit(3)"], program_settings=quick_to_give_up)

    processes.wait_until(
        lambda: processes.info(settings, name)["statename"] == "FATAL", what="FATAL", timeout=30, interval=0.2
    )

    result = _ctrlgpt_status()
    assert result.returncode == 1, result.stdout
    line = next(line for line in result.stdout.splitlines() if line.startswith(name))
    assert line.split()[1] == "fatal"
    assert "exit status 3" in line
    assert processes.running_pid(settings, name) is None


def test_logs_rotate_by_size(settings, program):
    name = "test-supervised-chatty"
    small_logs = settings.model_copy(update={"supervise_log_max_bytes": 10_000, "supervise_log_backups": 2})
    # 40 KB of output, a line at a time (supervisord rotates after a write, so one write may overshoot), then it stays up.
    chatty = "import time\nfor _ in range(400): print('x' * 99, flush=True); time.sleep(0.002)\ntime.sleep(300)"
    program(name, [sys.executable, "-c", chatty], program_settings=small_logs)
    log = processes.log_file(settings, name)
    processes.wait_until(lambda: log.with_name(log.name + ".2").exists(), what="rotated logs", timeout=30, interval=0.2)
    time.sleep(1)  # the last writes land

    kept = [path for path in log.parent.iterdir() if path.name.startswith(log.name)]
    assert sorted(path.name for path in kept) == [log.name, log.name + ".1", log.name + ".2"]
    assert all(path.stat().st_size <= 10_000 + 2_000 for path in kept), [path.stat().st_size for path in kept]


def test_starting_a_service_that_dies_fails_at_once_instead_of_waiting_for_it(settings, program):
    name = "test-supervised-dies-while-starting"
    no_retries = settings.model_copy(update={"supervise_start_retries": 0, "supervise_start_s": 1})
    pid = program(name, [sys.executable, "-c", "import time; time.sleep(0.3)"], program_settings=no_retries)
    never_ready = Service(
        name=name,
        start=lambda _: pid,
        ready=lambda _: False,
        url=lambda _: "nowhere",
        address=lambda _: ("127.0.0.1", 9),
        ready_timeout_s=3600,
    )
    with pytest.raises(services.ServiceFailed, match="exited while starting"):
        services._wait_ready(settings, never_ready, pid)


@pytest.mark.parametrize("recorded_matches", [False, True], ids=["pid-reused-by-another-process", "our-supervisord"])
def test_stop_signals_only_the_process_it_started(tmp_path, recorded_matches):
    """A data directory whose supervisord is gone, with pid files naming a live process (after a reboot, say)."""
    bystander = subprocess.Popen(["sleep", "120"], start_new_session=True)
    try:
        run = tmp_path / "run"
        run.mkdir()
        create_time = psutil.Process(bystander.pid).create_time()
        recorded = create_time if recorded_matches else create_time - 3600
        (run / "supervisord.started.json").write_text(json.dumps({"pid": bystander.pid, "create_time": recorded}))
        (run / "supervisord.pid").write_text(str(bystander.pid))
        (run / "kafka.pid").write_text(str(bystander.pid))  # the pid files of before supervisord

        result = subprocess.run(
            processes.ctrlgpt_command("stop"),
            env={**os.environ, "CTRLGPT_DATA_DIR": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

        assert result.returncode == 0, result.stdout + result.stderr
        if recorded_matches:
            assert bystander.wait(timeout=30) == -15  # SIGTERM: it was the one we recorded
        else:
            time.sleep(0.5)
            assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_a_program_given_up_on_is_started_again_after_the_cool_down(tmp_path):
    """A supervisord of its own (the cool-down is the listener's): the program fails while its dependency is away."""
    own = Settings(data_dir=tmp_path, supervise_start_retries=0, supervise_start_s=1, supervise_fatal_retry_s=1)
    away = tmp_path / "dependency-away"
    away.touch()
    waits_for_dependency = f"import os, sys, time\nif os.path.exists({str(away)!r}): sys.exit(4)\ntime.sleep(300)"
    try:
        processes.start(own, "needs-dependency", [sys.executable, "-c", waits_for_dependency])
        processes.wait_until(
            lambda: processes.info(own, "needs-dependency")["statename"] == "FATAL",
            what="FATAL",
            timeout=30,
            interval=0.1,
        )
        away.unlink()

        processes.wait_until(
            lambda: processes.info(own, "needs-dependency")["statename"] == "RUNNING",
            what="revived",
            timeout=30,
            interval=0.2,
        )
        entry = next(entry for entry in status.current(own) if entry.name == "needs-dependency")
        assert entry.state == "up"
        assert entry.restarts >= 1
        assert entry.last_exit["how"] == "exit status 4"
    finally:
        supervisor.shutdown(own)


def test_kill_service_kills_hard_and_keeps_it_down_until_started_again(settings, program, tmp_path):
    name = "test-supervised-service"
    cleaned_up = tmp_path / "clean-shutdown-ran"
    # A process that would leave a trace if it ever ran its SIGTERM handler (a clean shutdown).
    server = (
        "import pathlib, signal, time\n"
        f"signal.signal(signal.SIGTERM, lambda *_: (pathlib.Path({str(cleaned_up)!r}).touch(), exit(0)))\n"
        "time.sleep(300)"
    )
    program(name, [sys.executable, "-c", server])
    processes.wait_until(
        lambda: processes.info(settings, name)["statename"] == "RUNNING", what=name, timeout=30, interval=0.2
    )

    killed = faults.kill_service(settings, name)

    time.sleep(2)  # a supervisord restart would have happened by now (it restarts within a second)
    assert processes.running_pid(settings, name) is None
    assert processes.info(settings, name)["statename"] == "STOPPED"
    assert not cleaned_up.exists()
    processes.wait_until(
        lambda: (_status_of(settings, name).last_exit or {}).get("how") == "terminated by SIGKILL",
        what="exit recorded",
        timeout=10,
        interval=0.2,
    )
    restarted = program(name, [sys.executable, "-c", server])
    assert restarted != killed


def test_stop_leaves_nothing_running(tmp_path):
    own = Settings(data_dir=tmp_path)
    pid = processes.start(own, "sleeper", ["sleep", "300"])
    daemon = supervisor.rpc(own).supervisor.getPID()

    result = subprocess.run(
        processes.ctrlgpt_command("stop"),
        env={**os.environ, "CTRLGPT_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert _ended(pid)
    assert _ended(daemon)
    assert not supervisor.answering(own)


def _ended(pid: int) -> bool:
    """Gone, or a zombie that its parent (init, for the daemonized supervisord) has not reaped yet."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_programs_die_with_a_killed_supervisord_and_up_starts_afresh(tmp_path):
    own = Settings(data_dir=tmp_path)
    try:
        pid = processes.start(own, "sleeper", ["sleep", "300"])
        processes.wait_until(
            lambda: processes.info(own, "sleeper")["statename"] == "RUNNING", what="sleeper", timeout=30, interval=0.2
        )
        daemon = psutil.Process(supervisor.rpc(own).supervisor.getPID())

        daemon.kill()
        processes.wait_until(lambda: _ended(pid), what="sleeper gone with supervisord", timeout=10, interval=0.1)

        restarted = processes.start(own, "sleeper", ["sleep", "300"])  # a fresh supervisord, a fresh sleeper
        assert restarted != pid
        assert supervisor.rpc(own).supervisor.getPID() != daemon.pid
    finally:
        supervisor.shutdown(own)


def test_stop_kills_a_process_that_ignores_sigterm_after_the_timeout(settings, program):
    name = "test-supervised-stubborn"
    stubborn = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(300)"
    pid = program(name, [sys.executable, "-c", stubborn])
    processes.wait_until(
        lambda: processes.info(settings, name)["statename"] == "RUNNING", what=name, timeout=30, interval=0.2
    )

    assert processes.stop(settings, name, timeout=1) is True

    processes.wait_until(lambda: _ended(pid), what="stubborn process gone", timeout=10, interval=0.1)
    assert processes.info(settings, name) is None  # dropped from supervisord: not reported as down
