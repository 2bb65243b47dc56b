"""The long-running ctrlgpt processes of the one-machine deployment, each a `ctrlgpt` sub-command.

Each runs under the data directory's supervisord (deploy/processes.py), which restarts it when it dies.
"""

from __future__ import annotations

import structlog

from ctrlgpt.settings import Settings
from deploy import processes

log = structlog.get_logger()

# Started in this order; stopped in reverse, so that producers stop before what they feed.
WORKERS: tuple[str, ...] = (
    "api",
    "trainer",
    "label-bridge",
    "doccano-sink",
    "index-sink",
    "cleaner",
    "crawler",
    "demo-site",
)


def settings_env(settings: Settings) -> dict[str, str]:
    """The settings as CTRLGPT_* variables, so that every worker runs with the same ones."""
    return {f"CTRLGPT_{name.upper()}": str(value) for name, value in settings.model_dump().items() if value is not None}


def start_workers(settings: Settings) -> None:
    env = settings_env(settings)
    for name in WORKERS:
        processes.start(settings, name, processes.ctrlgpt_command(name), env=env)


def stop_workers(settings: Settings) -> list[str]:
    return [name for name in reversed(WORKERS) if processes.stop(settings, name)]
