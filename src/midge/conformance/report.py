"""What `midge check` reports: each scenario's outcome, the summary, and how they are shown.

One row per scenario as it finishes, in one of three forms: aligned plain
text, the same table through rich on a terminal (colours, wrapped titles, a
spinner), or JSON lines for programs. The summary also decides the exit
status. rich is optional (the `rich` extra; plain text without it) and
imported only when a rich report is made, so that `midge --help` stays fast.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.table import Table

    from midge.conformance.registry import Scenario
    from midge.conformance.runner import Result

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

PASS, FAIL, DEVIATION, SKIPPED = "pass", "FAIL", "known deviation", "skipped"
NOT_APPLICABLE = "not applicable"
JSON_STATUS = {
    PASS: "pass",
    FAIL: "fail",
    DEVIATION: "known_deviation",
    SKIPPED: "skipped",
    NOT_APPLICABLE: "not_applicable",
}
STYLES = {
    PASS: "green",
    FAIL: "bold red",
    DEVIATION: "yellow",
    SKIPPED: "dim",
    NOT_APPLICABLE: "dim",
}
NOTE_INDENT = 7  # notes start under the result column
STATUS_WIDTH = len(DEVIATION)


# ------------------------------------------------------------------- outcomes


@dataclass(frozen=True, slots=True)
class Outcome:
    """One row: a scenario's result as the report shows it."""

    id: str
    title: str
    rule: str
    status: str
    detail: str = ""
    deviation: str | None = None
    seconds: float = 0.0

    def notes(self) -> list[str]:
        """The lines printed under the row."""
        shown = (FAIL, DEVIATION, NOT_APPLICABLE)
        lines = [self.detail] if self.status in shown and self.detail else []
        if self.status == DEVIATION and self.deviation:
            lines.append(f"known deviation, {self.deviation}")
        return lines

    def as_json(self) -> dict[str, Any]:
        return {
            "type": "result",
            "id": self.id,
            "title": self.title,
            "rule": self.rule,
            "status": JSON_STATUS[self.status],
            "detail": self.detail,
            "deviation": self.deviation,
            "seconds": round(self.seconds, 3),
        }


def classify(result: Result, deviations: dict[str, str]) -> Outcome:
    """pass, not applicable, FAIL, or known deviation when the failure is in `deviations`."""
    deviation = None if result.passed else deviations.get(result.id)
    status = PASS if result.passed else (FAIL if deviation is None else DEVIATION)
    if result.passed and not result.applicable:
        status = NOT_APPLICABLE
    return Outcome(
        result.id, result.title, result.rule, status, result.detail, deviation, result.seconds
    )


def skipped(item: Scenario) -> Outcome:
    return Outcome(item.id, item.title, item.rule, SKIPPED, "--skip")


@dataclass
class Summary:
    """Counts per status; the last line of the report."""

    target: str
    profiles: list[str]
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(JSON_STATUS, 0))
    seconds: float = 0.0
    interrupted: bool = False

    def add(self, outcome: Outcome) -> None:
        self.counts[outcome.status] += 1

    def exit_status(self) -> int:
        if self.counts[FAIL]:
            return EXIT_FAILED
        return EXIT_INTERRUPTED if self.interrupted else EXIT_OK

    def line(self) -> str:
        parts = [f"{self.counts[PASS]} passed", f"{self.counts[FAIL]} failed"]
        if deviations := self.counts[DEVIATION]:
            plural = "s" if deviations != 1 else ""
            parts.append(f"{deviations} known deviation{plural} ({', '.join(self.profiles)})")
        if self.counts[SKIPPED]:
            parts.append(f"{self.counts[SKIPPED]} skipped")
        if self.counts[NOT_APPLICABLE]:
            parts.append(f"{self.counts[NOT_APPLICABLE]} not applicable")
        return ", ".join(parts)

    def as_json(self) -> dict[str, Any]:
        return {
            "type": "summary",
            "target": self.target,
            "known_deviations_from": self.profiles,
            "passed": self.counts[PASS],
            "failed": self.counts[FAIL],
            "known_deviations": self.counts[DEVIATION],
            "skipped": self.counts[SKIPPED],
            "not_applicable": self.counts[NOT_APPLICABLE],
            "interrupted": self.interrupted,
            "seconds": round(self.seconds, 3),
            "exit_status": self.exit_status(),
        }


# -------------------------------------------------------------------- reports


class Report(Protocol):
    def listing(self, scenarios: list[Scenario]) -> None: ...
    def start(self, heading: str, scenarios: list[Scenario]) -> None: ...
    def running(self, item: Scenario, index: int, total: int) -> None: ...
    def row(self, outcome: Outcome) -> None: ...
    def finish(self, summary: Summary) -> None: ...
    def error(self, message: str) -> None: ...


def _stderr(message: str) -> None:
    print(f"midge check: {message}", file=sys.stderr, flush=True)


class PlainReport:
    """Aligned text, one line per row as it finishes, notes indented under it."""

    def __init__(self) -> None:
        self.rule_width = 0

    def listing(self, scenarios: list[Scenario]) -> None:
        width = max((len(s.rule) for s in scenarios), default=0)
        for item in scenarios:
            print(f"{item.id:<5}  {item.rule:<{width}}  {item.title}")

    def start(self, heading: str, scenarios: list[Scenario]) -> None:
        self.rule_width = max(len(s.rule) for s in scenarios)
        print(heading)
        print(self._line("ID", "RESULT", "RULE", "TITLE"), flush=True)

    def running(self, item: Scenario, index: int, total: int) -> None:
        pass

    def row(self, outcome: Outcome) -> None:
        print(self._line(outcome.id, outcome.status, outcome.rule, outcome.title))
        for note in outcome.notes():
            print(" " * NOTE_INDENT + note)
        sys.stdout.flush()

    def _line(self, scenario_id: str, status: str, rule: str, title: str) -> str:
        return f"{scenario_id:<5}  {status:<{STATUS_WIDTH}}  {rule:<{self.rule_width}}  {title}"

    def finish(self, summary: Summary) -> None:
        if summary.interrupted:
            print("interrupted")
        print(summary.line(), flush=True)

    def error(self, message: str) -> None:
        _stderr(message)


class RichReport(PlainReport):
    """The same table on a terminal: colours, wrapped titles, a spinner while a scenario runs."""

    def __init__(self, console: Console) -> None:
        super().__init__()
        self.console = console
        self.status = console.status("")

    def listing(self, scenarios: list[Scenario]) -> None:
        self.rule_width = max((len(s.rule) for s in scenarios), default=0)
        table = self._table(show_header=True, with_status=False)
        for item in scenarios:
            table.add_row(item.id, item.rule, item.title)
        self.console.print(table)

    def start(self, heading: str, scenarios: list[Scenario]) -> None:
        self.rule_width = max(len(s.rule) for s in scenarios)
        self.console.print(heading, style="bold")
        self.console.print(self._row_table("ID", "RESULT", "RULE", "TITLE", "bold"), style="bold")
        self.status.start()

    def running(self, item: Scenario, index: int, total: int) -> None:
        from rich.text import Text  # noqa: PLC0415

        text = Text(f"[{index}/{total}] {item.id} {item.title}")
        text.truncate(max(self.console.width - 3, 10), overflow="ellipsis")
        self.status.update(text)

    def row(self, outcome: Outcome) -> None:
        style = STYLES[outcome.status]
        self.console.print(
            self._row_table(outcome.id, outcome.status, outcome.rule, outcome.title, style)
        )
        for note in outcome.notes():
            self.console.print(self._note(note, "red" if outcome.status == FAIL else "dim"))

    def finish(self, summary: Summary) -> None:
        self.status.stop()
        if summary.interrupted:
            self.console.print("interrupted", style="yellow")
        style = "bold red" if summary.counts[FAIL] else "bold green"
        self.console.print(summary.line(), style=style)

    def _note(self, note: str, style: str) -> RenderableType:
        from rich.padding import Padding  # noqa: PLC0415
        from rich.text import Text  # noqa: PLC0415

        return Padding(Text(note, style=style), (0, 0, 0, NOTE_INDENT))

    def _row_table(self, scenario_id: str, status: str, rule: str, title: str, style: str) -> Table:
        from rich.text import Text  # noqa: PLC0415

        table = self._table(show_header=False, with_status=True)
        table.add_row(scenario_id, Text(status, style=style), rule, title)
        return table

    def _table(self, show_header: bool, with_status: bool) -> Table:
        from rich.table import Table  # noqa: PLC0415

        table = Table(show_header=show_header, box=None, padding=(0, 2, 0, 0), expand=True)
        table.add_column("ID", width=5, no_wrap=True)
        if with_status:
            table.add_column("RESULT", width=STATUS_WIDTH, no_wrap=True)
        table.add_column("RULE", width=self.rule_width, no_wrap=True)
        table.add_column("TITLE", ratio=1)
        return table


class JsonReport:
    """JSON lines on stdout: a result object per scenario as it finishes, then the summary."""

    def listing(self, scenarios: list[Scenario]) -> None:
        for item in scenarios:
            self._emit({"type": "scenario", "id": item.id, "title": item.title, "rule": item.rule})

    def start(self, heading: str, scenarios: list[Scenario]) -> None:
        pass

    def running(self, item: Scenario, index: int, total: int) -> None:
        pass

    def row(self, outcome: Outcome) -> None:
        self._emit(outcome.as_json())

    def finish(self, summary: Summary) -> None:
        self._emit(summary.as_json())

    def error(self, message: str) -> None:
        _stderr(message)
        self._emit({"type": "error", "message": message, "exit_status": EXIT_USAGE})

    def _emit(self, item: dict[str, Any]) -> None:
        print(json.dumps(item), flush=True)


def make_report(as_json: bool) -> Report:
    """JSON, rich on a terminal (rich's TTY_COMPATIBLE=1 forces it), else plain text."""
    if as_json:
        return JsonReport()
    try:
        from rich.console import Console  # noqa: PLC0415
    except ImportError:  # rich is optional (`pip install midge[rich]`): the same rows, plain
        return PlainReport()
    console = Console(highlight=False)
    return RichReport(console) if console.is_terminal else PlainReport()
