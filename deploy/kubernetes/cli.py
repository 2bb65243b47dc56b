"""`ctrlgpt kube render|secrets-file|probe`: the cluster's manifests, and what its pods run besides a service.

ctrlgpt kube render [--out DIR] [--defaults]    # write the manifests and their kustomization.yaml
ctrlgpt kube secrets-file --secrets-dir DIR     # init container: data_dir/secrets.json from a Secret
ctrlgpt kube probe --group GROUP                # a worker's probe: is this pod a member of GROUP?
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from ctrlgpt.settings import REPO_ROOT, Settings
from deploy.kubernetes import pod

MANIFESTS_DIR = REPO_ROOT / "deploy" / "kubernetes" / "manifests"
HEADER = "# Rendered by `ctrlgpt kube render` from the topic registry, the groups and the settings: do not edit.\n"


class _PlainDumper(yaml.SafeDumper):
    """YAML without anchors and aliases: a dict used twice (a pod's labels, say) is written twice, as a reader
    of the manifests expects."""

    def ignore_aliases(self, data: object) -> bool:
        return True


def _string(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    # A script (PostgreSQL's init) reads as a block, line by line.
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_PlainDumper.add_representer(str, _string)


def to_yaml(documents: list[dict[str, Any]]) -> str:
    return HEADER + yaml.dump_all(documents, Dumper=_PlainDumper, sort_keys=False, default_flow_style=False, width=120)


def rendered_files(settings: Settings) -> dict[str, str]:
    """File name -> its YAML text: the manifests and the kustomization.yaml that lists them."""
    # Imported here: the probe runs every 30 s in each worker's pod and needs none of the registries.
    from deploy.kubernetes import render

    files = {name: to_yaml(documents) for name, documents in render.render(settings).items()}
    files["kustomization.yaml"] = to_yaml([render.kustomization(files, settings)])
    return files


def write(files: dict[str, str], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.yaml"):
        if stale.name not in files:
            stale.unlink()
    for name, text in files.items():
        (out / name).write_text(text)


def main(settings: Settings, args: argparse.Namespace) -> int:
    if args.action == "render":
        # --defaults: what deploy/kubernetes/manifests holds, whatever CTRLGPT_* this shell has.
        chosen = Settings.model_construct() if args.defaults else settings
        out = Path(args.out) if args.out else MANIFESTS_DIR
        write(rendered_files(chosen), out)
        print(f"rendered {out}; apply with: kubectl apply -k {out}")
        return 0
    if args.action == "secrets-file":
        if not args.secrets_dir:
            raise SystemExit("secrets-file needs --secrets-dir")
        pod.write_secrets_file(pod.secrets_from_dir(Path(args.secrets_dir)), settings.secrets_file)
        return 0
    if not args.group:
        raise SystemExit("probe needs --group")
    pod_ip = os.environ.get("POD_IP", "")
    if not pod_ip:
        print("POD_IP is not set (the Deployment sets it from status.podIP)", file=sys.stderr)
        return 1
    return 0 if pod.probe(settings, args.group, pod_ip) else 1
