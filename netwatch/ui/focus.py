"""Opening the dashboard on one alert (`netwatch watch --alert ID`): wait for it, or say why not.

A desktop notification's "open" action starts a dashboard for the alert it announced, but the
dashboard knows only the alerts its feed brings: the daemon's recent alerts arrive with its
first full state, a replay's when their tick comes. So the request waits a few snapshots for
its alert and then gives up, leaving the notice in the status line; the app does the
opening. Pure: no Textual here.
"""

from __future__ import annotations

from collections.abc import Mapping

from netwatch.model import Alert

WAIT_TICKS = 5
"""Snapshots to wait for the alert after the first; the daemon's first state carries every
recent alert, so a few ticks are plenty for an alert that was just announced."""


class AlertFocus:
    """A request to open on an alert: waiting, found (done), or given up (the notice stays).

    Without an alert id (a plain `netwatch watch`) it never waits and says nothing."""

    def __init__(self, alert_id: str | None, wait_ticks: int = WAIT_TICKS) -> None:
        self.alert_id = alert_id
        self.ticks_left = wait_ticks
        self.waiting = alert_id is not None
        self.notice: str | None = None
        if alert_id is not None:
            self.notice = f"waiting for alert {alert_id}"

    def find(self, alerts: Mapping[str, Alert]) -> Alert | None:
        """The alert, the first time it is in the index (then the request is done)."""
        if not self.waiting or self.alert_id is None:
            return None
        alert = alerts.get(self.alert_id)
        if alert is not None:
            self.waiting, self.notice = False, None
        return alert

    def tick(self) -> None:
        """A snapshot went by without the alert; after the last one, give up."""
        if not self.waiting:
            return
        self.ticks_left -= 1
        if self.ticks_left < 0:
            self.give_up()

    def give_up(self) -> None:
        """No more waiting (the ticks ran out, or the feed ended): keep the notice."""
        if self.waiting:
            self.waiting = False
            self.notice = f"not in the recent alerts: {self.alert_id}"
