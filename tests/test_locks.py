"""The locks: the runtime's holds no test tools, every pin has hashes, and the test lock agrees with it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEST_TOOLS = {
    "pytest",
    "pytest-timeout",
    "schemathesis",
    "hypothesis",
    "openai",
    "werkzeug",
    "ruff",
    "kubernetes-validate",
}
PIN = re.compile(r"^([A-Za-z0-9_.\-\[\]]+)==(\S+)")


def pins(name: str) -> dict[str, str]:
    found = {}
    for line in (ROOT / name).read_text().splitlines():
        if match := PIN.match(line):
            found[match.group(1).lower()] = match.group(2)
    return found


def test_the_runtime_lock_holds_no_test_tools_and_the_test_lock_adds_them_at_the_runtime_s_versions():
    runtime, test = pins("requirements.lock"), pins("requirements-test.lock")
    assert runtime and not TEST_TOOLS & set(runtime)
    assert TEST_TOOLS <= set(test)
    assert {name: test.get(name) for name in runtime} == runtime


def test_every_pin_carries_its_hashes():
    for name in ("requirements.lock", "requirements-test.lock"):
        blocks = re.split(r"\n(?=[A-Za-z0-9_.\-]+==)", (ROOT / name).read_text())
        unhashed = [block.split()[0] for block in blocks if PIN.match(block) and "--hash=sha256:" not in block]
        assert not unhashed, f"{name}: pins without hashes: {unhashed}"
