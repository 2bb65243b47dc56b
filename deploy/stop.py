"""`ctrlgpt stop`: stop the workers, then Kafka, Elasticsearch and doccano, then supervisord. Data stays.

Every stop goes through supervisord, which signals only its own children; supervisord
itself is shut down over its socket (see deploy/supervisor.py for the one fallback signal).
"""

from __future__ import annotations

import argparse

from ctrlgpt.settings import Settings
from deploy import services, supervisor
from deploy.workers import stop_workers


def main(settings: Settings, args: argparse.Namespace) -> int:
    stopped = stop_workers(settings)
    print(f"stopped workers: {', '.join(stopped) or 'none were running'}")
    services.down(settings)
    # Whatever else it still runs (a program started by hand, the event listener) stops with it.
    if supervisor.shutdown(settings):
        print("stopped supervisord")
    return 0
