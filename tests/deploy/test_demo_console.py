"""What `ctrlgpt demo` prints for people: its steps, the training run's stage and step, a generation per target."""

from __future__ import annotations

import io

from rich.console import Console

from deploy.demo_console import DemoConsole
from streams.records import TrainingRunProgressed


def recorded() -> tuple[DemoConsole, io.StringIO]:
    out = io.StringIO()
    return DemoConsole(Console(file=out, width=200, color_system=None)), out


def test_steps_counts_and_the_training_run_read_as_plain_lines_without_json(settings):
    console, out = recorded()
    console.step(4, "waiting for clean pages to become searchable in Elasticsearch")
    console.count(4, "articles searchable", 3, 12)
    events = [
        TrainingRunProgressed(run_id="r1", stage="queued"),
        TrainingRunProgressed(run_id="r1", stage="sft", step=1, total_steps=100, loss=3.21),
        TrainingRunProgressed(run_id="r1", stage="sft", step=2, total_steps=100, loss=3.2),  # same tenth: not again
        TrainingRunProgressed(run_id="r1", stage="sft", step=55, total_steps=100, loss=2.5),
        TrainingRunProgressed(run_id="r1", stage="ppo", step=3, total_steps=8, reward=0.42, kl=0.013),
        TrainingRunProgressed(run_id="r1", stage="gate", message="judging 64 held-out prompts"),
    ]
    for event in events:
        console.training(event)
    console.summary(
        settings,
        "The hotel by the lake",
        {
            "positive": {"completion": " was lovely", "model_version": "v0003-aa"},
            "negative": {"completion": " was dirty", "model_version": "v0002-bb"},
            "neutral": {"completion": None, "model_version": None},
        },
    )
    lines = out.getvalue().splitlines()
    assert lines[:2] == [
        "[4/9] waiting for clean pages to become searchable in Elasticsearch",
        "[4/9]   articles searchable: 3/12",
    ]
    training = [line for line in lines if line.startswith("[7/9]")]
    assert training == [
        "[7/9]   run r1: queued",
        "[7/9]   run r1: sft (step 1/100, loss 3.21)",
        "[7/9]   run r1: sft (step 55/100, loss 2.5)",
        "[7/9]   run r1: ppo (step 3/8, reward 0.42, kl 0.013)",
        "[7/9]   run r1: gate judging 64 held-out prompts",
    ]
    assert "positive     ' was lovely'  (model v0003-aa)" in lines
    assert "negative     ' was dirty'  (model v0002-bb)" in lines
    assert "neutral      (no version of this target's policy is served yet)" in lines
    assert any(line.startswith("Try it:") and line.endswith(f"{settings.api_url}/try") for line in lines)
    assert not [line for line in lines if line.lstrip().startswith("{")]  # no log line reaches the terminal
