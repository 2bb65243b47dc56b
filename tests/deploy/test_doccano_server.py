import subprocess

import psutil
import pytest

from ctrlgpt import secrets
from deploy import processes
from deploy.doccano import server


def test_address_comes_from_the_url():
    assert server.http_address("http://127.0.0.1:8000") == ("127.0.0.1", 8000)


def test_port_must_be_explicit():
    with pytest.raises(ValueError, match="HOST:PORT"):
        server.http_address("http://127.0.0.1")


def test_secret_key_is_made_once_and_private(tmp_path):
    first = server.secret_key(tmp_path)
    assert len(first) >= 50
    assert server.secret_key(tmp_path) == first
    assert (tmp_path / "secret-key").stat().st_mode & 0o777 == 0o600


@pytest.mark.integration
def test_the_running_doccano_listens_on_loopback_only_under_a_fixed_gunicorn(settings):
    pid = processes.running_pid(settings, server.NAME)
    assert pid is not None, "the stack's doccano is not running"
    port = server.http_address(settings.doccano_url)[1]
    family = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    listening = {
        c.laddr.ip
        for p in family
        for c in p.net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == port
    }
    assert listening == {settings.doccano_host} == {"127.0.0.1"}
    version = subprocess.run(
        [str(server.VENV / "bin" / "gunicorn"), "--version"], capture_output=True, text=True, check=True
    ).stdout
    assert int(version.split("version ")[1].split(".")[0]) >= 23  # CVE-2024-1135 is fixed in 22.0


@pytest.mark.integration
def test_preparing_doccano_keeps_the_admin_password_off_every_command_line(settings, monkeypatch):
    """The stack's doccano prepared again (as every start does): the admin's password is set through
    stdin, the data directory is the owner's only, and the password still logs in."""
    password = secrets.load_or_create(settings.secrets_file).doccano_password
    command_lines: list[list[str]] = []
    real_run = subprocess.run

    def recording_run(args, **kwargs):
        command_lines.append([str(a) for a in args])
        return real_run(args, **kwargs)

    monkeypatch.setattr(server.subprocess, "run", recording_run)
    argv, env = server.prepare(settings)
    assert command_lines and not [line for line in command_lines if any(password in part for part in line)]
    assert password not in " ".join(argv) and password not in " ".join(env.values())
    assert argv[argv.index("--bind") + 1] == f"{settings.doccano_host}:{server.http_address(settings.doccano_url)[1]}"
    assert server.home(settings).stat().st_mode & 0o777 == 0o700
    assert server.login(settings)
