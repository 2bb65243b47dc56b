"""A benchmark's report: each figure printed as it is measured, then the whole as a Markdown table for the docs."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Report:
    """Rows of (what, value) for people; `figures` keeps named numbers for tests and comparisons."""

    rows: list[tuple[str, str]] = field(default_factory=list)
    figures: dict[str, float] = field(default_factory=dict)

    def add(self, what: str, value: str, **figures: float) -> None:
        self.rows.append((what, value))
        self.figures.update(figures)
        print(f"  {what}: {value}", flush=True)

    def table(self) -> str:
        width = max(len(what) for what, _ in self.rows)
        return "\n".join(f"| {what.ljust(width)} | {value} |" for what, value in self.rows)
