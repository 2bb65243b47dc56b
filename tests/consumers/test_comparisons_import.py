"""Reading the pairs an operator sends for ranking (pure), and the command against the running doccano."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from consumers.comparisons_import import main, read_pairs
from consumers.doccano_client import (
    ComparisonPair,
    DoccanoClient,
    ensure_comparison_project,
)
from ctrlgpt.settings import Settings


def test_lines_become_pairs_and_blank_lines_are_ignored() -> None:
    lines = ['{"prompt": "p", "a": "x", "b": "y"}', "", '{"prompt": "q", "a": "x", "b": "z", "target": "positive"}']
    assert read_pairs(lines) == [
        ComparisonPair(prompt="p", a="x", b="y"),
        ComparisonPair(prompt="q", a="x", b="z", target="positive"),
    ]


BAD_LINES = [
    '{"prompt": "p", "a": "x"}',
    '{"prompt": "p", "a": "x", "b": "x"}',
    "not json",
    '{"prompt": "p", "a": "x", "b": "y", "c": 1}',
]


@pytest.mark.parametrize("bad", BAD_LINES)
def test_a_bad_line_is_an_error_naming_it(bad: str) -> None:
    with pytest.raises(ValueError, match="pairs.jsonl:2: not a comparison pair"):
        read_pairs(['{"prompt": "p", "a": "x", "b": "y"}', bad], "pairs.jsonl")


@pytest.mark.integration
def test_the_command_sends_each_pair_once(
    project_settings: Settings, doccano: DoccanoClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pairs = [
        {"prompt": "Harbor", "a": "A joyful day.", "b": "A grim day."},
        {"prompt": "Storm", "a": "Calm.", "b": "Wild."},
    ]
    file = tmp_path / "pairs.jsonl"
    file.write_text("\n".join(json.dumps(pair) for pair in pairs))
    args = argparse.Namespace(file=str(file))
    assert main(project_settings, args) == 0
    assert main(project_settings, args) == 0
    assert "0 new comparisons" in capsys.readouterr().out.splitlines()[-1]
    project = ensure_comparison_project(doccano, project_settings.doccano_comparison_project)
    assert sorted(e["meta"]["prompt"] for e in doccano.iter_examples(project.id)) == ["Harbor", "Storm"]

    file.write_text('{"prompt": "Rain", "a": "x"}')
    assert main(project_settings, args) == 2
    assert len(list(doccano.iter_examples(project.id))) == 2
