"""Log lines: JSON for machines even for an exception nobody caught; readable lines for a person at a terminal."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

CRASHES = {
    "main thread": "raise RuntimeError('disk on fire')",
    "worker thread": (
        "import threading\n"
        "t = threading.Thread(target=lambda: 1 / 0, name='sampler')\n"
        "t.start(); t.join()\n"
        "raise RuntimeError('disk on fire')"
    ),
}


def run(code: str, fmt: str) -> subprocess.CompletedProcess:
    setup = f"from ctrlgpt import logs\nlogs.configure('probe', 'INFO', {fmt!r})\n"
    return subprocess.run([sys.executable, "-c", setup + code], capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("where", CRASHES)
def test_an_uncaught_exception_is_one_json_line_with_its_traceback(where):
    done = run(CRASHES[where], "json")
    assert done.returncode == 1
    lines = [json.loads(line) for line in done.stderr.splitlines()]  # every line is JSON: no plain traceback
    crash = lines[-1]
    assert (crash["event"], crash["level"], crash["service"]) == ("uncaught_exception", "critical", "probe")
    assert "RuntimeError: disk on fire" in crash["exception"] and "Traceback" in crash["exception"]
    if where == "worker thread":
        thread = lines[0]
        assert thread["thread"] == "sampler" and "ZeroDivisionError" in thread["exception"]


def test_the_console_format_is_for_people():
    done = run(
        "import structlog\nstructlog.get_logger().info('crawl.started', pages=3)\nraise RuntimeError('x')", "console"
    )
    first = done.stderr.splitlines()[0]
    assert "crawl.started" in first and "pages=3" in first and not first.startswith("{")
    assert "RuntimeError: x" in done.stderr and done.returncode == 1


def test_auto_writes_json_when_stderr_is_not_a_terminal():
    done = run("import structlog\nstructlog.get_logger().info('crawl.started')", "auto")
    assert json.loads(done.stderr.splitlines()[0])["event"] == "crawl.started"
