"""The alerts pane: newest first, severity in colour and in words, count and last seen.

Keeps no state of its own: the app owns the alert index (by `Alert.id`) and hands the pane
the sorted list; rows are keyed by alert id so the cursor stays on the same alert.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widgets import DataTable

from netwatch.model import Action, Alert, AlertState
from netwatch.ui import fmt
from netwatch.ui.detail import SEVERITY_STYLE

MAX_SHOWN = 500
"""The pane is rebuilt per snapshot; older alerts stay in the index and the store."""


def logged(alert: Alert) -> bool:
    """The policy says this rule's alerts are for the record, not for attention."""
    return alert.action is Action.LOG


def newest_first(alerts: Sequence[Alert]) -> list[Alert]:
    """Alerts that want attention first, then the logged ones (policy action `log`); each
    part by last seen (newest first), then severity, then id (stable)."""
    return sorted(alerts, key=lambda a: (logged(a), -a.last_seen, -a.severity.rank, a.id))


class AlertsPane(DataTable[Text]):
    """One row per alert; Enter opens its detail (handled by the app)."""

    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002  # Textual's name
        super().__init__(id=id, cursor_type="row", show_header=True)
        self.alerts: list[Alert] = []
        self.held: str | None = None
        """An alert the cursor stays on even at the top (`hold`), until the user moves it."""

    def on_mount(self) -> None:
        """Create the columns."""
        self.add_column("Sev", width=4, key="sev")
        self.add_column("N", width=4, key="count")
        self.add_column("Last", width=4, key="last")
        self.add_column("Process", width=10, key="proc")
        self.add_column("Alert", key="title")

    def show(self, alerts: Sequence[Alert], now: float) -> None:
        """Show these alerts, newest first; a selected alert below the top keeps the cursor,
        at the top the cursor stays on the newest, unless the alert is held (`hold`)."""
        keep = self.selected()
        if keep is None or keep.id != self.held:
            self.held = None  # the user moved the cursor away from the held alert
        if self.held is None and self.cursor_row == 0:
            keep = None
        self.alerts = newest_first(alerts)[:MAX_SHOWN]
        self.clear()
        for a in self.alerts:
            style = SEVERITY_STYLE.get(a.severity.value, "")
            quiet = logged(a)
            if a.state is AlertState.CLOSED or quiet:
                style = "dim"
            note = " (closed)" if a.state is AlertState.CLOSED else ""
            note += " (logged)" if quiet else ""
            proc = a.process.name if a.process is not None else "?"
            self.add_row(
                Text(fmt.severity(a.severity), style=style),
                Text(f"{a.count}x", justify="right"),
                Text(fmt.duration(max(0.0, now - a.last_seen)), justify="right"),
                Text(proc),
                Text(
                    a.title + note,
                    style=style if a.severity.rank >= 3 or style == "dim" else "",
                ),
                key=a.id,
            )
        if keep is not None:
            for i, a in enumerate(self.alerts):
                if a.id == keep.id:
                    self.move_cursor(row=i, animate=False)
                    break

    def hold(self, alert_id: str) -> bool:
        """Put the cursor on this alert and keep it there as newer alerts arrive (an alert the
        dashboard was opened on); False when the alert is not shown."""
        for i, a in enumerate(self.alerts):
            if a.id == alert_id:
                self.move_cursor(row=i, animate=False)
                self.held = alert_id
                return True
        return False

    def selected(self) -> Alert | None:
        """The alert under the cursor."""
        if not self.alerts or not 0 <= self.cursor_row < len(self.alerts):
            return None
        return self.alerts[self.cursor_row]
