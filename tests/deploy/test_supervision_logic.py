"""The pure parts of supervision: restart history, exit messages, status lines, configuration."""

from __future__ import annotations

from pathlib import Path

from ctrlgpt.settings import Settings
from deploy import status, supervisor_config
from deploy.supervisor_events import exit_message, record


def _event(history, state, name="crawler", **fields):
    return record(history, f"PROCESS_STATE_{state}", {"processname": name, **fields}, fields.pop("how", None), 100.0)


def test_only_automatic_starts_count_as_restarts():
    history = _event({}, "STARTING", from_state="STOPPED")  # started by ctrlgpt
    history = _event(history, "EXITED", from_state="RUNNING", expected="0")
    history = _event(history, "STARTING", from_state="EXITED")  # supervisord after a crash
    history = _event(history, "BACKOFF", from_state="STARTING")
    history = _event(history, "STARTING", from_state="BACKOFF")  # supervisord after a failed start
    history = _event(history, "FATAL", from_state="BACKOFF")
    history = _event(history, "STARTING", from_state="FATAL")  # a person's start again
    assert history["crawler"]["restarts"] == 2


def test_an_end_records_how_and_whether_it_was_expected():
    history = record({}, "PROCESS_STATE_EXITED", {"processname": "api", "expected": "0"}, "terminated by SIGKILL", 7.0)
    assert history["api"]["last_exit"] == {
        "how": "terminated by SIGKILL",
        "expected": False,
        "at": 7.0,
        "state": "EXITED",
    }
    history = record(history, "PROCESS_STATE_STOPPED", {"processname": "api"}, "terminated by SIGTERM", 8.0)
    assert history["api"]["last_exit"]["expected"] is True


def test_exit_message_is_the_last_line_about_that_program():
    tail = (
        "2026-12-04 16:25:59,016 WARN exited: demo-site (terminated by SIGKILL; not expected)\n"
        "2026-12-04 16:26:00,016 WARN exited: demo-site-2 (exit status 9; not expected)\n"
        "2026-12-04 16:26:59,016 INFO exited: demo-site (exit status 0; expected)\n"
        "2026-12-04 16:27:59,016 WARN stopped: kafka (terminated by SIGKILL)\n"
    )
    assert exit_message(tail, "demo-site") == "exit status 0"
    assert exit_message(tail, "kafka") == "terminated by SIGKILL"
    assert exit_message(tail, "api") is None


def _info(name, statename, pid=0, start=50.0, stop=0.0, spawnerr=""):
    return {"name": name, "statename": statename, "pid": pid, "start": start, "stop": stop, "spawnerr": spawnerr}


def test_status_lists_services_always_and_known_workers_in_order():
    infos = [
        _info("crawler", "RUNNING", pid=12),
        _info("api", "BACKOFF", spawnerr="Exited too quickly"),
        _info("kafka", "RUNNING", pid=10),
        _info(supervisor_config.LISTENER, "RUNNING", pid=3),
    ]
    history = {"crawler": {"restarts": 4, "last_exit": {"how": "exit status 1", "expected": False, "at": 40.0}}}
    statuses = status.program_statuses(infos, history, ["kafka", "elasticsearch"])
    assert [(entry.name, entry.state, entry.restarts) for entry in statuses] == [
        ("kafka", "up", 0),
        ("elasticsearch", "down", 0),
        ("api", "backoff", 0),
        ("crawler", "up", 4),
    ]
    lines = status.format_status(statuses)
    assert lines[4].split()[:5] == ["crawler", "up", "12", "4", "1970-01-01T00:00:50Z"]
    assert "exit status 1 at 1970-01-01T00:00:40Z" in lines[4]
    assert "Exited too quickly" in lines[3]


def test_supervisord_listens_on_an_owner_only_socket_and_no_port(tmp_path: Path):
    conf = supervisor_config.supervisord_conf(Settings(data_dir=tmp_path))
    assert f"file={tmp_path}/run/supervisord.sock\nchmod=0700" in conf
    assert "inet_http_server" not in conf


def test_program_logs_rotate_by_the_settings_and_percent_signs_are_escaped(tmp_path: Path):
    settings = Settings(data_dir=tmp_path / "100%", supervise_log_max_bytes=1234, supervise_log_backups=3)
    conf = supervisor_config.program_conf(settings, "crawler", tmp_path / "spec.json")
    assert "stdout_logfile_maxbytes=1234\nstdout_logfile_backups=3" in conf
    assert "100%%/logs/crawler.log" in conf
    assert "autorestart=true" in conf


def test_a_start_after_fatal_is_a_restart_only_when_the_listener_revived_it():
    by_person = _event({}, "STARTING", from_state="FATAL")
    assert by_person["crawler"]["restarts"] == 0
    revived = record(
        {}, "PROCESS_STATE_STARTING", {"processname": "crawler", "from_state": "FATAL"}, None, 1.0, revived=True
    )
    assert revived["crawler"]["restarts"] == 1


def test_a_program_may_be_asked_to_stop_with_another_signal(tmp_path: Path):
    settings = Settings(data_dir=tmp_path)
    assert "stopsignal=TERM\n" in supervisor_config.program_conf(settings, "kafka", tmp_path / "spec.json")
    assert "stopsignal=INT\n" in supervisor_config.program_conf(
        settings, "postgres", tmp_path / "spec.json", stop_signal="INT"
    )
