"""The check screen (`v`): `netwatch check`'s findings, "is my PC safe?", in the dashboard.

The screen never looks at the machine itself: it calls the injected `FindingsSource` (wired by
`cli.watch` to the same collector and pure judgement as `netwatch check`) in a thread worker,
so a slow `dpkg-query` or socket table does not freeze the dashboard. Without a source (a
replay or a capture file: the recording is not this machine) it says the check is unavailable.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static
from textual.worker import Worker, WorkerState

from netwatch.feed import FindingsSource
from netwatch.model import Finding
from netwatch.ui.detail import SEVERITY_STYLE

NOTHING_FOUND = "Nothing found: no VPN software, relay, VPN listener or recent VPN alert."
UNAVAILABLE = (
    "The check is not available here: it looks at this machine, and a recording is not "
    "this machine. Run `netwatch check` on the machine that was recorded."
)
RUNNING = "Checking this machine (packages, processes, listening ports, SoftEther configs)..."


def severity_text(f: Finding) -> Text:
    """The severity in words (full: the screen has room) and in its colour."""
    return Text(f.severity.value.upper(), style=SEVERITY_STYLE.get(f.severity.value, ""))


def finding_detail(f: Finding) -> Text:
    """One finding in full: severity, title, evidence lines, what to do."""
    out = severity_text(f)
    out.append(f"  {f.title}\n", style="bold")
    if f.evidence:
        out.append("\nEvidence\n", style="bold underline")
        for line in f.evidence:
            out.append(f"  - {line}\n")
    if f.advice:
        out.append("\nWhat to do\n", style="bold underline")
        out.append(f"{f.advice}\n")
    return out


class CheckScreen(Screen[None]):
    """Findings worst first in a table; the highlighted one's evidence and advice below."""

    BINDINGS = [  # noqa: RUF012  # Textual declares BINDINGS as a mutable class attribute
        Binding("escape,q,backspace", "close", "Back"),
        Binding("R", "rerun", "Check again"),
    ]

    def __init__(self, source: FindingsSource | None) -> None:
        super().__init__()
        self.source = source
        self.findings: list[Finding] = []
        self.done = False

    def compose(self) -> ComposeResult:
        """Title, status line, findings table, detail pane, footer."""
        title = Text(" Check: is this PC safe? ", style="bold reverse")
        yield Static(title, classes="screen-title")
        with Vertical():
            yield Static(id="check-status")
            yield DataTable(id="check-findings", cursor_type="row")
            with VerticalScroll(id="check-detail", classes="detail-body"):
                yield Static(id="check-detail-text")
        yield Footer()

    def on_mount(self) -> None:
        """Set the columns and start the check."""
        self.query_one("#check-findings", DataTable).add_columns("Severity", "Finding")
        self.action_rerun()

    def action_rerun(self) -> None:
        """Run the check (again): the machine may have changed since the screen opened."""
        if self.source is None:
            self._say(UNAVAILABLE, clear=True)
            return
        self._say(RUNNING, clear=True)
        self.run_check(self.source)

    @work(thread=True, exclusive=True, group="check", exit_on_error=False)
    def run_check(self, source: FindingsSource) -> Sequence[Finding]:
        """Call the source off the UI thread; the result arrives as a worker state change."""
        return source()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """Show the findings, or why there are none."""
        if event.worker.group != "check":
            return
        if event.state is WorkerState.SUCCESS:
            self.show(list(event.worker.result or ()))
        elif event.state is WorkerState.ERROR:
            self.done = True
            self._say(f"The check failed: {event.worker.error}", clear=True)

    def show(self, findings: list[Finding]) -> None:
        """Fill the table, worst first as `detect.check` orders them."""
        self.findings = findings
        self.done = True
        table = self.query_one("#check-findings", DataTable)
        table.clear()
        for f in findings:
            table.add_row(severity_text(f), f.title)
        if not findings:
            self._say(NOTHING_FOUND)
            return
        self._say(f"{len(findings)} finding(s); Enter or the arrows show each one in full below.")
        table.focus()
        self._detail(0)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        """Show the highlighted finding's evidence and advice."""
        event.stop()
        self._detail(event.cursor_row)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """Enter keeps the dashboard's Enter from seeing this table."""
        event.stop()
        self._detail(event.cursor_row)

    def _detail(self, row: int) -> None:
        body = finding_detail(self.findings[row]) if 0 <= row < len(self.findings) else Text()
        self.query_one("#check-detail-text", Static).update(body)

    def _say(self, line: str, *, clear: bool = False) -> None:
        """Set the status line; `clear` also empties the table and detail (no result)."""
        self.query_one("#check-status", Static).update(line)
        if clear:
            self.findings = []
            self.query_one("#check-findings", DataTable).clear()
            self._detail(-1)

    def action_close(self) -> None:
        """Back to the dashboard."""
        self.dismiss(None)
