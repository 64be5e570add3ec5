"""The process view: one process name's flows, countries, bytes and alerts.

Built from the snapshot the dashboard last showed; Enter on a flow opens its detail.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from netwatch.model import Alert, EnrichedFlow, Snapshot
from netwatch.ui import fmt
from netwatch.ui.detail import process_summary


class ProcessScreen(Screen[None]):
    """Summary of a process plus a table of its flows."""

    BINDINGS = [  # noqa: RUF012  # Textual declares BINDINGS as a mutable class attribute
        Binding("escape,q,backspace", "close", "Back"),
    ]

    def __init__(
        self,
        name: str,
        flows: Sequence[EnrichedFlow],
        alerts: Sequence[Alert],
        snapshot: Snapshot | None,
        open_flow: Callable[[EnrichedFlow], None],
    ) -> None:
        super().__init__()
        self.process_name = name
        self.flows = list(flows)
        self.alerts = list(alerts)
        self.snapshot = snapshot
        self.open_flow = open_flow

    def compose(self) -> ComposeResult:
        """Title, summary, flows table, footer."""
        title = Text(f" Process {self.process_name} ", style="bold reverse")
        yield Static(title, classes="screen-title")
        with Vertical():
            summary = process_summary(self.process_name, self.flows, self.alerts, self.snapshot)
            yield Static(summary, id="process-summary")
            yield DataTable(id="process-flows", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        """Fill the flows table."""
        table = self.query_one("#process-flows", DataTable)
        table.add_columns("Dir", "Remote", "Host", "Cty", "Proto", "Up", "Down", "ASN / Org")
        for ef in self.flows:
            f = ef.flow
            table.add_row(
                fmt.direction(f.direction),
                str(f.key.remote or "*"),
                f.dns_name or f.sni or "",
                fmt.country(ef.remote),
                fmt.proto(ef),
                fmt.size(f.bytes_sent),
                fmt.size(f.bytes_received),
                fmt.asn(ef.remote),
            )

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """Open the selected flow."""
        event.stop()
        if 0 <= event.cursor_row < len(self.flows):
            self.open_flow(self.flows[event.cursor_row])

    def action_close(self) -> None:
        """Back to the dashboard."""
        self.dismiss(None)
