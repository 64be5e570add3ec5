"""Opening the drill-down screens (alert, flow, process) with the newest data for each.

A mixin of `NetwatchApp`, kept apart so the app module stays about composing and feeding.
Detail screens get a builder rather than text: each new snapshot rebuilds the open screen,
taking the alert's latest state from the index and the remote's latest `RemoteInfo` (RDAP
owners arrive in later snapshots) from the current flows.
"""

from __future__ import annotations

from dataclasses import replace

from rich.text import Text
from textual.app import App

from netwatch.model import Alert, EnrichedFlow, RemoteInfo, Snapshot
from netwatch.ui import detail
from netwatch.ui.screens.process import ProcessScreen
from netwatch.ui.screens.text_screen import TextScreen
from netwatch.ui.stats import RateTracker, process_name, row_key


def latest_remote(snapshot: Snapshot | None, remote: RemoteInfo | None) -> RemoteInfo | None:
    """The newest `RemoteInfo` for the same address in the snapshot, else `remote` itself."""
    if snapshot is None or remote is None:
        return remote
    for ef in snapshot.flows:
        if ef.remote is not None and ef.remote.ip == remote.ip:
            return ef.remote
    return remote


class DrillDown(App[None]):
    """The app's drill-down part; the attributes below are set by `NetwatchApp`."""

    snapshot: Snapshot | None
    alerts: dict[str, Alert]
    rates: RateTracker

    def now(self) -> float:
        """The time ages are measured against (`NetwatchApp.now`)."""
        raise NotImplementedError

    def refresh_detail(self) -> None:
        """Rebuild the open detail screen from the newest snapshot and alerts."""
        if isinstance(self.screen, TextScreen):
            self.screen.rebuild()

    def open_alert(self, alert: Alert) -> None:
        """Show an alert with evidence, process, remote and advice."""

        def build() -> Text:
            latest = self.alerts.get(alert.id, alert)
            latest = replace(latest, remote=latest_remote(self.snapshot, latest.remote))
            return detail.alert_detail(latest, self.snapshot, self.now())

        self.push_screen(TextScreen(f"Alert: {alert.title}", build))

    def open_flow(self, ef: EnrichedFlow) -> None:
        """Show one flow in detail, with the latest data for its key."""
        key = ef.flow.key

        def build() -> Text:
            snap = self.snapshot
            latest = next((f for f in snap.flows if f.flow.key == key), ef) if snap else ef
            rate = self.rates.rate_of(row_key(key))
            return detail.flow_detail(latest, rate, snap, self.alerts.values(), self.now())

        self.push_screen(TextScreen(f"Flow: {row_key(key)}", build))

    def open_process(self, name: str) -> None:
        """Show a process name's flows, countries, bytes and alerts."""
        snap = self.snapshot
        flows = [f for f in snap.flows if process_name(f) == name] if snap else []
        self.push_screen(
            ProcessScreen(name, flows, list(self.alerts.values()), snap, self.open_flow)
        )
