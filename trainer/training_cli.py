"""`ctrlgpt training now|cancel`: operator commands to the running trainer, through Kafka.

    ctrlgpt training now [--reason R]                 start a run now, even with no new label
    ctrlgpt training cancel [--run-id ID] [--reason R] stop the running run (or only run ID)

The trainer (`ctrlgpt trainer`) acts on them; progress, and the `cancelled` stage, appear on the
training-runs topic and in the trainer's log.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys

from ctrlgpt.settings import Settings
from streams import bus, commands, topics

__all__ = ["COMMANDS", "main"]

COMMANDS = {"now": "train", "cancel": "cancel"}


def main(settings: Settings, args: argparse.Namespace) -> int:
    if args.action == "now" and args.run_id is not None:
        print("ctrlgpt training now: --run-id is for cancel only", file=sys.stderr)
        return 2
    try:
        bus.ensure_topics(settings, [topics.TRAINING_COMMANDS])
        request = commands.request_training(
            settings,
            COMMANDS[args.action],
            run_id=args.run_id,
            requested_by=f"cli:{getpass.getuser()}",
            reason=args.reason,
        )
    except bus.ServiceUnavailable as exc:
        print(f"ctrlgpt training {args.action}: not sent: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(request.model_dump(mode="json"), indent=2))
    else:
        target = f" run {request.run_id}" if request.run_id else ""
        print(f"asked the trainer to {request.command}{target} (event {request.event_id})")
    return 0
