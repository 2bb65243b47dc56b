"""`ctrlgpt stop`: stop the workers, then Kafka, Elasticsearch and doccano. Data stays."""

from __future__ import annotations

import argparse

from ctrlgpt.settings import Settings
from deploy import services
from deploy.workers import stop_workers


def main(settings: Settings, args: argparse.Namespace) -> int:
    stopped = stop_workers(settings)
    print(f"stopped workers: {', '.join(stopped) or 'none were running'}")
    return services.main(settings, argparse.Namespace(action="down")) or 0
