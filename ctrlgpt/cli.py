"""`ctrlgpt`: the one command line that reaches every service's `main()`.

    ctrlgpt demo                 # the whole loop on the local demo site
    ctrlgpt stop                 # stop everything the demo started
    ctrlgpt services up|down|status
    ctrlgpt status               # every service and worker: up?, restarts, last exit
    ctrlgpt crawler | cleaner | index-sink | doccano-sink | label-bridge | trainer | api
    ctrlgpt seed URL [URL ...]   # ask the crawler to fetch these
    ctrlgpt lag [--watch]        # consumer lag per group, Burrow-style status
    ctrlgpt models list|show|compare|rollback|pin|unpin
    ctrlgpt training now|cancel  # ask the running trainer
    ctrlgpt kube render          # the Kubernetes manifests (deploy/kubernetes/, docs/deploy.md)
    ctrlgpt --set NAME=VALUE ... # override any setting (see ctrlgpt.settings), before or after the command
    ctrlgpt --version

Every service takes `(settings, args)`; each is imported only when asked for, so a command
loads only what it runs: `ctrlgpt api` and `ctrlgpt models` import `models/` and `streams/`,
never `trainer/` nor a training library (`datasets`, `trl`); tests/test_import_boundary.py
checks it.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from importlib import metadata

from pydantic import ValidationError

from ctrlgpt import logs, worker_metrics
from ctrlgpt.settings import Settings, describe_error, unknown_environment

# command -> (module, help); each module has main(settings, args) -> int | None
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("deploy.demo", "Install, start everything, run the whole loop on the demo site, print the URLs."),
    "stop": ("deploy.stop", "Stop every process the demo started (data stays)."),
    "services": ("deploy.services", "Kafka, Elasticsearch and doccano: up, down or status."),
    "status": (
        "deploy.status",
        "Every service and worker: state, pid, restarts, since when, last exit (exit 1 if any is down).",
    ),
    "topics": ("deploy.topics", "Create the registry's topics that are missing."),
    "demo-site": ("deploy.demo_site", "Serve the local demo website."),
    "annotate": ("deploy.scripted_annotator", "Scripted annotator: labels passages in doccano through its REST API."),
    "seed": ("producers.seed", "Publish crawl requests for seed URLs."),
    "crawler": ("producers.crawler", "Playwright crawler: crawl requests -> raw pages."),
    "cleaner": ("streams.cleaner", "faust worker: raw pages -> clean pages."),
    "index-sink": ("consumers.search_index", "Clean pages -> Elasticsearch."),
    "es-rebuild": ("consumers.index_rebuild", "Rebuild the pages index behind its alias without downtime."),
    "doccano-sink": ("consumers.doccano_sink", "Clean pages -> doccano passages to label."),
    "label-bridge": ("consumers.doccano_labels", "doccano annotations -> label events."),
    "compare": ("consumers.comparisons_import", "Send pairs of generations (JSON lines) to doccano for ranking."),
    "trainer": ("trainer.worker", "Label events -> SFT, reward, PPO -> a promoted model version."),
    "train": ("trainer.pipeline", "Run one training run now, from the data on Kafka."),
    "models": ("models.cli", "Model versions: list, show, compare, rollback, pin, unpin."),
    "training": ("trainer.training_cli", "Ask the running trainer to train now or to cancel its run."),
    "api": (
        "api.main",
        "FastAPI: generate, completions, classify, search, feedback, admin; hot-swap on model updates.",
    ),
    "lag": ("deploy.lag", "Consumer lag per group, topic and partition, with Burrow-style status."),
    "kube": (
        "deploy.kubernetes.cli",
        "Kubernetes: render the cluster's manifests; in its pods, the secrets file and the workers' probe.",
    ),
}


# Arguments of the commands that take any (kept here so that --help imports nothing heavy).
ARGUMENTS: dict[str, list[tuple[tuple[str, ...], dict]]] = {
    "services": [(("action",), {"choices": ["up", "down", "status"], "help": "What to do."})],
    "seed": [
        (("urls",), {"nargs": "+", "help": "Seed URLs."}),
        (("--max-depth",), {"type": int, "default": None, "help": "Links followed from the seed (default: setting)."}),
        (("--allow-domain",), {"action": "append", "default": [], "help": "Extra domain in scope (repeatable)."}),
        (
            ("--fetch-mode",),
            {
                "choices": ["browser", "http"],
                "default": "browser",
                "help": "browser: Chromium renders pages; http: a plain GET, cheaper for pages without JavaScript.",
            },
        ),
        (("--max-pages",), {"type": int, "default": None, "help": "Pages per site for this crawl (default: setting)."}),
    ],
    "demo": [(("--timeout",), {"type": float, "default": 1800.0, "help": "Seconds to wait for a served model."})],
    "annotate": [(("--limit",), {"type": int, "default": 200, "help": "Passages to label, at most."})],
    "compare": [(("file",), {"help": "JSON lines: prompt, a, b, and optionally target, model_version, page_url."})],
    "models": [
        (("action",), {"choices": ["list", "show", "compare", "rollback", "pin", "unpin"], "help": "What to do."}),
        (("versions",), {"nargs": "*", "metavar": "VERSION", "help": "show/rollback/pin: one; compare: two."}),
        (("--reason",), {"default": "", "help": "rollback/pin: why (recorded in the manifest and the model update)."}),
        (
            ("--target",),
            {"default": None, "help": "Whose policy: one of the targets setting (default: target_sentiment)."},
        ),
        (("--json",), {"action": "store_true", "help": "Machine-readable output."}),
    ],
    "training": [
        (("action",), {"choices": ["now", "cancel"], "help": "now: start a run; cancel: stop the running run."}),
        (("--run-id",), {"default": None, "help": "cancel: only this run (default: whichever is running)."}),
        (("--reason",), {"default": "", "help": "Why (logged by the trainer)."}),
        (("--json",), {"action": "store_true", "help": "Print the published command as JSON."}),
    ],
    "lag": [
        (
            ("--group",),
            {
                "action": "append",
                "default": [],
                "help": "Consumer group to show (repeatable); default: those matching ops_groups.",
            },
        ),
        (("--watch",), {"action": "store_true", "help": "Keep sampling and printing until interrupted."}),
        (("--samples",), {"type": int, "default": 3, "help": "Samples per evaluation window."}),
        (("--interval",), {"type": float, "default": 2.0, "help": "Seconds between samples."}),
        (("--json",), {"action": "store_true", "help": "Print JSON instead of a table."}),
    ],
    "kube": [
        (
            ("action",),
            {
                "choices": ["render", "secrets-file", "probe"],
                "help": "render: write the manifests; secrets-file and probe: run inside the cluster's pods.",
            },
        ),
        (("--out",), {"default": None, "help": "render: directory to write (default: deploy/kubernetes/manifests)."}),
        (
            ("--defaults",),
            {"action": "store_true", "help": "render: the settings' defaults, ignoring CTRLGPT_* and --set."},
        ),
        (("--secrets-dir",), {"default": None, "help": "secrets-file: where the Secret is mounted."}),
        (("--group",), {"default": None, "help": "probe: the consumer group this pod must be a member of."}),
    ],
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ctrlgpt", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {metadata.version('ctrlgpt')}")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="Override a setting.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text)
        command.set_defaults(module=module)
        # Also after the command (`ctrlgpt api --set api_port=8081`); a dest of its own, because a
        # sub-parser's values replace the main parser's of the same name.
        command.add_argument(
            "--set", dest="set_after", action="append", default=[], metavar="NAME=VALUE", help="Override a setting."
        )
        for flags, options in ARGUMENTS.get(name, []):
            command.add_argument(*flags, **options)
    return parser


def settings_or_exit(parser: argparse.ArgumentParser, overrides: list[str]) -> Settings:
    """The settings from CTRLGPT_* and `--set`; a bad one is a usage error (exit 2, no traceback)."""
    for name, closest in unknown_environment(os.environ):
        hint = f" (did you mean {closest}?)" if closest else ""
        print(f"ctrlgpt: warning: {name} is not a setting and is ignored{hint}", file=sys.stderr)
    try:
        return Settings().with_overrides(overrides)
    except ValidationError as exc:
        parser.exit(2, f"ctrlgpt: error: {describe_error(exc)}\n")
    except ValueError as exc:
        parser.exit(2, f"ctrlgpt: error: {exc}\n")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    settings = settings_or_exit(parser, args.set + args.set_after)
    logs.configure(args.command, settings.log_level, settings.log_format)
    worker_metrics.serve(settings, args.command)
    service = importlib.import_module(args.module)
    return int(service.main(settings, args) or 0)


if __name__ == "__main__":
    sys.exit(main())
