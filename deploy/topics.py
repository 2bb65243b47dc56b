"""`ctrlgpt topics`: create the registry's topics that the broker lacks."""

from __future__ import annotations

import argparse

from ctrlgpt.settings import Settings
from streams import bus


def main(settings: Settings, args: argparse.Namespace) -> int:
    created = bus.ensure_topics(settings)
    print("\n".join(f"created {name}" for name in created) if created else "all topics exist")
    return 0
