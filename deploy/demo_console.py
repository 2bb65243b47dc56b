"""What `ctrlgpt demo` shows a person: its nine steps, counts as they grow, the training run's
stage and step, and at the end a generation per target and where everything is.

Only this goes to the terminal; the demo's log lines go to `<logs_dir>/demo.log`. Pure
rendering on a `rich` console, so a test drives it with recorded input.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Console

from ctrlgpt.settings import Settings
from streams.records import TrainingRunProgressed

STEPS = 9


class DemoConsole:
    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(highlight=False)
        self._last_training: tuple[str, str, int] | None = None

    def step(self, number: int, message: str) -> None:
        self.console.print(f"[bold cyan]\\[{number}/{STEPS}][/] {message}")

    def count(self, number: int, what: str, seen: int, total: int) -> None:
        self.console.print(f"[cyan]\\[{number}/{STEPS}][/]   {what}: [bold]{seen}[/]/{total}")

    def training(self, event: TrainingRunProgressed) -> None:
        """The run's stage and step, once per change of stage and every tenth of a stage's steps."""
        bucket = event.step * 10 // event.total_steps if event.total_steps else event.step
        key = (event.run_id, event.stage, bucket)
        if key == self._last_training:
            return
        self._last_training = key
        figures = [f"step {event.step}/{event.total_steps}" if event.total_steps else ""]
        figures += [
            f"{name} {value:.3g}"
            for name, value in (("loss", event.loss), ("reward", event.reward), ("kl", event.kl))
            if value is not None
        ]
        detail = ", ".join(f for f in figures if f)
        message = f" {event.message}" if event.message and not detail else ""
        self.console.print(
            f"[cyan]\\[7/{STEPS}][/]   run {event.run_id}: [bold]{event.stage}[/]"
            + (f" ({detail})" if detail else "")
            + message
        )

    def summary(self, settings: Settings, prompt: str, generations: Mapping[str, dict[str, Any]]) -> None:
        self.console.print()
        self.console.print(f"[bold]Prompt:[/]      {prompt}")
        for target, generation in generations.items():
            if generation["completion"] is None:
                self.console.print(f"[bold]{target:<12}[/] [dim](no version of this target's policy is served yet)[/]")
                continue
            self.console.print(
                f"[bold]{target:<12}[/] {generation['completion']!r}  [dim](model {generation['model_version']})[/]"
            )
        self.console.print()
        rows = [
            ("Try it", f"{settings.api_url}/try"),
            ("Dashboard", f"{settings.api_url}/dashboard  (Prometheus: {settings.api_url}/metrics)"),
            ("API docs", f"{settings.api_url}/docs"),
            (
                "doccano",
                f"{settings.doccano_url}  (user {settings.doccano_username}, password in {settings.secrets_file})",
            ),
            ("Elasticsearch", f"{settings.es_url}/{settings.es_index}/_search?q=*"),
            ("Demo site", settings.demo_site_url),
            ("Logs", f"{settings.logs_dir}  (this run's: demo.log)"),
            ("Status", "ctrlgpt status  (every service and worker: up?, restarts, last exit)"),
        ]
        for name, value in rows:
            self.console.print(f"{name + ':':<15} {value}", soft_wrap=True)
        self.console.print("Stop with `make stop` (data stays).")
