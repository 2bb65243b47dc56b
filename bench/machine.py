"""The machine a benchmark ran on, in one line for its figures."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def describe() -> str:
    """Cores, CPU model, Python, and the load average when the run began (other work skews every figure)."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    model = next(
        (line.split(":", 1)[1].strip() for line in lines if "model name" in line), platform.processor() or "unknown CPU"
    )
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return f"{os.cpu_count()} cores (nproc), {model}, Python {platform.python_version()}, load average {load}"
