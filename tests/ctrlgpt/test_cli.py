"""The command line's contract with people and scripts: --version, --set anywhere, bad settings as usage errors."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata

import pytest

from ctrlgpt import cli
from ctrlgpt.settings import Settings, unknown_environment


def run_cli(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The real entry point in a child process: what a shell sees (exit status, stderr)."""
    code = "import sys; from ctrlgpt.cli import main; sys.exit(main())"
    return subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=60, env=env, check=False
    )


def test_version_prints_the_installed_version():
    done = run_cli("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"ctrlgpt {metadata.version('ctrlgpt')}"


def test_set_works_before_and_after_the_command(monkeypatch):
    seen: list[Settings] = []
    monkeypatch.setattr(cli, "COMMANDS", {"probe": ("tests_cli_probe", "")})
    monkeypatch.setattr(cli.logs, "configure", lambda *args, **kwargs: None)  # keeps pytest's logging as it is
    monkeypatch.setitem(sys.modules, "tests_cli_probe", type(sys)("tests_cli_probe"))
    sys.modules["tests_cli_probe"].main = lambda settings, args: seen.append(settings) or 0
    assert cli.main(["--set", "api_port=8181", "probe", "--set", "log_level=WARNING"]) == 0
    assert (seen[0].api_port, seen[0].log_level) == (8181, "WARNING")


@pytest.mark.parametrize(
    ("argv", "variable", "message"),
    [
        (["--set", "api_port=abc", "status"], None, "setting api_port (--set api_port=... or CTRLGPT_API_PORT)"),
        (["status", "--set", "no_such_setting=1"], None, "known setting name, got 'no_such_setting=1'"),
        (["status"], ("CTRLGPT_KAFKA_BROKERS", "many"), "setting kafka_brokers"),
    ],
)
def test_a_bad_setting_is_a_usage_error_without_a_traceback(argv, variable, message):
    env = {"PATH": "/usr/bin:/bin"}
    if variable:
        env[variable[0]] = variable[1]
    done = run_cli(*argv, env=env)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("ctrlgpt: error: ") and message in done.stderr
    assert "Traceback" not in done.stderr and not done.stdout


def test_a_misspelled_variable_is_named_with_the_setting_it_probably_meant():
    found = unknown_environment({"CTRLGPT_API_PROT": "1", "CTRLGPT_API_PORT": "2", "HOME": "/root", "CTRLGPT_ZZZ": ""})
    assert found == [("CTRLGPT_API_PROT", "CTRLGPT_API_PORT"), ("CTRLGPT_ZZZ", None)]
    done = run_cli("--set", "api_port=x", "status", env={"PATH": "/usr/bin:/bin", "CTRLGPT_API_PROT": "1"})
    assert "ctrlgpt: warning: CTRLGPT_API_PROT is not a setting and is ignored (did you mean CTRLGPT_API_PORT?)" in (
        done.stderr
    )
