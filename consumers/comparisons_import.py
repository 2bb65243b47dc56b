"""`ctrlgpt compare FILE`: send pairs of generations to doccano's comparison project for ranking.

FILE holds one JSON object per line, the fields of `ComparisonPair`: prompt, a, b
and, optionally, target, model_version, page_url. The whole file is checked before
anything is sent: a bad line is an error naming it, never skipped. Pairs already in
the project are not sent again (`import_comparisons`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path

from pydantic import ValidationError

from consumers.doccano_client import ComparisonPair, DoccanoClient, ensure_comparison_project, import_comparisons
from ctrlgpt import secrets
from ctrlgpt.settings import Settings

__all__ = ["main", "read_pairs"]


def read_pairs(lines: Iterable[str], source: str = "input") -> list[ComparisonPair]:
    """The pairs of JSON lines (blank lines ignored); a `ValueError` naming the first bad line."""
    pairs = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            pairs.append(ComparisonPair.model_validate_json(line))
        except ValidationError as exc:
            raise ValueError(f"{source}:{number}: not a comparison pair: {exc}") from exc
    return pairs


def main(settings: Settings, args: argparse.Namespace) -> int:
    path = Path(args.file)
    try:
        pairs = read_pairs(path.read_text().splitlines(), str(path))
    except (OSError, ValueError) as exc:
        print(exc, file=sys.stderr)
        return 2
    password = secrets.load_or_create(settings.secrets_file).doccano_password
    with DoccanoClient(settings.doccano_url, settings.doccano_username, password) as client:
        client.login()
        project = ensure_comparison_project(client, settings.doccano_comparison_project)
        created = import_comparisons(client, project.id, pairs)
    print(
        f"{created} new comparisons in doccano project {settings.doccano_comparison_project!r} "
        f"({len(pairs) - created} of {len(pairs)} were there already)"
    )
    return 0
