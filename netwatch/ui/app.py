"""NetwatchApp: the dashboard. Renders snapshots from an injected feed; never samples.

One thread worker iterates `feed.snapshots()` and posts `AlertsChanged` (never replaced) and
`SnapshotReady` (replaceable, so a slow terminal renders only the newest). The app keeps an
alert index by `Alert.id`, per-flow rates and a throughput history, and hands rows built by
`view` to the widgets. Pause freezes the table and charts, not the feed. Time for ages comes
from the injected `now` (default: the snapshot's own `taken_at`, so replays read as recorded).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import DataTable, Footer, Input
from textual.worker import Worker, WorkerState, get_current_worker

from netwatch.feed import FindingsSource, SnapshotFeed
from netwatch.model import Alert, Snapshot
from netwatch.ui import query, view
from netwatch.ui.commands import DashboardCommands
from netwatch.ui.drilldown import DrillDown
from netwatch.ui.focus import AlertFocus
from netwatch.ui.messages import AlertsChanged, FeedEnded, SnapshotReady
from netwatch.ui.screens.check import CheckScreen
from netwatch.ui.screens.help import HelpScreen
from netwatch.ui.screens.history import HistoryScreen, HistorySource
from netwatch.ui.stats import (
    History,
    RateTracker,
    bytes_by_country,
    process_name,
)
from netwatch.ui.widgets.alerts_pane import AlertsPane
from netwatch.ui.widgets.charts import Charts
from netwatch.ui.widgets.flows_table import FlowsTable
from netwatch.ui.widgets.status_bar import StatusBar, status_text


class NetwatchApp(DrillDown):
    """The dashboard: status, connections, alerts, charts; drill-down screens."""

    CSS_PATH = Path(__file__).with_name("netwatch.tcss")
    TITLE = "netwatch"
    COMMANDS = App.COMMANDS | {DashboardCommands}
    BINDINGS = [  # noqa: RUF012  # Textual declares BINDINGS as a mutable class attribute
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help"),
        Binding("slash", "filter", "Filter"),
        Binding("p", "pause", "Pause"),
        Binding("g", "group", "Group"),
        Binding("s", "sort(1)", "Sort"),
        Binding("S", "sort(-1)", "Sort back", show=False),
        Binding("r", "reverse", "Reverse", show=False),
        Binding("o", "process", "Process"),
        Binding("a", "focus_alerts", "Alerts"),
        Binding("t", "focus_table", "Table", show=False),
        Binding("c", "charts", "Charts", show=False),
        Binding("v", "check", "Check"),
        Binding("h", "history", "History"),
    ]

    def __init__(
        self,
        feed: SnapshotFeed,
        *,
        now: Callable[[], float] | None = None,
        mode_label: str | None = None,
        title: str = "netwatch",
        check: FindingsSource | None = None,
        history: HistorySource | None = None,
        open_history: bool = False,
        focus_alert: str | None = None,
    ) -> None:
        super().__init__()
        self.focus_request = AlertFocus(focus_alert)
        self.feed = feed
        self.check_source = check
        self.history_source = history
        self.open_history = open_history
        self.now_provider = now
        self.mode_label = mode_label
        self.title = title
        self.state = view.ViewState()
        self.snapshot: Snapshot | None = None
        self.shown_snapshot: Snapshot | None = None
        self.alerts: dict[str, Alert] = {}
        self.rates = RateTracker()
        self.history = History()
        self.snapshots_seen = 0
        self.note: str | None = None
        self.shown_flows = 0
        self.rated: Snapshot | None = None
        self.status_bar = StatusBar(id="status")
        self.table = FlowsTable(id="flows")
        self.filter_box = Input(
            placeholder="filter: proc:NAME country:CC vpn:true port:N -term  (? help)", id="filter"
        )
        self.alerts_pane = AlertsPane(id="alerts")
        self.charts = Charts(id="charts")

    # ------------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        """Status, table, filter input (hidden), alerts and charts, footer."""
        yield self.status_bar
        yield self.table
        yield self.filter_box
        with Horizontal(id="bottom"):
            yield self.alerts_pane
            yield self.charts
        yield Footer()

    def on_mount(self) -> None:
        """Set up the table and start the feed worker."""
        self.table.set_columns(view.columns_for(self.state.grouping))
        self.table.set_sort_marker(self.state.sort, self.state.reverse)
        (self.alerts_pane if self.focus_request.waiting else self.table).focus()
        self._refresh_status()
        self.consume_feed()
        if self.open_history:
            self.action_history()

    @work(thread=True, exclusive=True, group="feed", exit_on_error=False)
    def consume_feed(self) -> None:
        """Iterate the feed in a thread; post each snapshot (and its alerts) to the app."""
        worker = get_current_worker()
        for snap in self.feed.snapshots():
            if worker.is_cancelled:
                return
            if snap.alerts:
                self.post_message(AlertsChanged(snap.alerts))
            self.post_message(SnapshotReady(snap))
        self.post_message(FeedEnded())

    def now(self) -> float:
        """The time ages are measured against."""
        if self.now_provider is not None:
            return self.now_provider()
        return self.snapshot.taken_at if self.snapshot is not None else 0.0

    # ------------------------------------------------------------------ feed events

    def on_alerts_changed(self, message: AlertsChanged) -> None:
        """Fold alerts into the index by id (idempotent: the latest state wins)."""
        for a in message.alerts:
            old = self.alerts.get(a.id)
            if old is None or (a.last_seen, a.count) >= (old.last_seen, old.count):
                self.alerts[a.id] = a
        self._render_alerts()
        self.refresh_detail()
        self._open_requested_alert()

    def on_snapshot_ready(self, message: SnapshotReady) -> None:
        """Track rates and history for every snapshot; render unless paused."""
        snap = message.snapshot
        self.snapshot = snap
        self.snapshots_seen += 1
        rates = self.rates
        self.history.add(snap, rates.update(snap), rates.active, rates.names)
        self.rated = snap
        if not self.state.paused:
            self.render_snapshot()
        self.focus_request.tick()
        self._refresh_status()
        self.refresh_detail()

    def on_feed_ended(self, message: FeedEnded) -> None:
        """Say that no more snapshots will come."""
        if message.error is not None:
            self.note = f"feed failed: {message.error}"
        elif self.mode_label in ("replay", "pcap"):
            self.note = "end of recording"
        else:
            self.note = "feed ended"
        self.focus_request.give_up()
        self._refresh_status()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A failing feed is shown in the status line instead of crashing the app."""
        if event.worker.group == "feed" and event.state is WorkerState.ERROR:
            error = event.worker.error
            self.note = f"feed failed: {error}" if error else "feed failed"
            self.focus_request.give_up()
            self._refresh_status()

    # ------------------------------------------------------------------ rendering

    def render_snapshot(self) -> None:
        """Apply the latest snapshot to the table and charts under the view state."""
        snap = self.snapshot
        if snap is None:
            return
        self.shown_snapshot = snap
        table = self.table
        table.set_columns(view.columns_for(self.state.grouping))
        table.set_sort_marker(self.state.sort, self.state.reverse)
        rates = self.rates
        if snap is self.rated:  # the tracker's keys and rates are this snapshot's, in order
            rows = view.build_rows(
                snap, self.state, {}, self.now(), rates.keys, rates.latest, rates.moved
            )
        else:
            rows = view.build_rows(snap, self.state, rates.rates, self.now())
        table.apply(rows)
        self.shown_flows = view.flow_count(rows)
        self._render_charts()
        self._render_alerts()

    def _render_alerts(self) -> None:
        self.alerts_pane.show(list(self.alerts.values()), self.now())

    def _open_requested_alert(self) -> None:
        """`watch --alert`: once the alert is in the index, select it and open its detail
        (unless the user has opened another screen meanwhile)."""
        alert = self.focus_request.find(self.alerts)
        if alert is None:
            return
        self.alerts_pane.hold(alert.id)
        self.alerts_pane.focus()
        if len(self.screen_stack) == 1:
            self.open_alert(alert)
        self._refresh_status()

    def _render_charts(self) -> None:
        charts = self.charts
        if charts.display and self.shown_snapshot is not None:
            charts.show(
                self.history, self._selected_process(), bytes_by_country(self.shown_snapshot.flows)
            )

    def _refresh_status(self) -> None:
        note = self.note
        feed_status = self.feed.status  # a daemon link says how it is doing
        if note is None and feed_status is not None and feed_status != "connected":
            note = feed_status
        if self.focus_request.notice is not None:
            note = "; ".join(filter(None, (self.focus_request.notice, note)))
        text = status_text(self.snapshot, self.state, self.shown_flows, self.mode_label, note)
        self.status_bar.show(text)

    def _selected_process(self) -> str | None:
        row = self.table.selected()
        if row is None:
            return None
        if row.flow is not None:
            return process_name(row.flow)
        return row.group if self.state.grouping is view.Grouping.PROCESS else None

    def set_state(self, **changes: object) -> None:
        """Change the view state and re-render from the latest snapshot."""
        self.state = replace(self.state, **changes)  # type: ignore[arg-type]  # known fields
        self.render_snapshot()
        self._refresh_status()

    # ------------------------------------------------------------------ actions

    DASHBOARD_ACTIONS = frozenset(
        {
            "filter",
            "pause",
            "group",
            "sort",
            "reverse",
            "process",
            "focus_alerts",
            "focus_table",
            "charts",
            "check",
            "history",
        }
    )
    """Actions that act on the dashboard screen; hidden and off while a drill-down is open."""

    def check_action(self, action: str, _parameters: tuple[object, ...]) -> bool | None:
        """Dashboard keys do nothing (and leave the footer) on the detail and help screens."""
        return not (action in self.DASHBOARD_ACTIONS and len(self.screen_stack) > 1)

    def action_help(self) -> None:
        """Show keys, filter language and columns."""
        self.push_screen(HelpScreen())

    def action_check(self) -> None:
        """Open the check screen: this machine's VPN findings (unavailable without a source)."""
        self.push_screen(CheckScreen(self.check_source))

    def action_history(self) -> None:
        """Open the history screen: the store's usage history (unavailable without one)."""
        now = self.now_provider or time.time  # the past is measured from the clock
        self.push_screen(HistoryScreen(self.history_source, now=now))

    def action_filter(self) -> None:
        """Open the filter input."""
        box = self.filter_box
        box.value = self.state.query.text
        box.add_class("visible")
        # set_focus now, not focus() (deferred): keys already queued must reach the input.
        self.set_focus(box)

    def on_input_changed(self, event: Input.Changed) -> None:
        """Filter as the user types."""
        if event.input.id == "filter":
            self.set_state(query=query.parse(event.value))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Enter keeps the filter and returns to the table."""
        if event.input.id == "filter":
            self.set_state(query=query.parse(event.value))
            self._close_filter()

    def _close_filter(self) -> None:
        self.filter_box.remove_class("visible")
        self.set_focus(self.table)  # at once: a `q` queued behind Enter must not be typed

    def on_key(self, event: object) -> None:
        """Escape in the filter clears it."""
        key = getattr(event, "key", None)
        box = self.filter_box
        if key == "escape" and box.has_focus:
            box.value = ""
            self.set_state(query=query.Query())
            self._close_filter()

    def action_pause(self) -> None:
        """Freeze rendering (the feed keeps running); unpausing shows the newest snapshot."""
        self.set_state(paused=not self.state.paused)

    def action_group(self) -> None:
        """Cycle flows -> process -> country -> ASN."""
        grouping = self.state.grouping.next()
        default = "down_rate"
        self.set_state(grouping=grouping, sort=default, reverse=True)

    def action_sort(self, step: int) -> None:
        """Sort by the next (or previous) column."""
        keys = [c.key for c in view.columns_for(self.state.grouping)]
        index = keys.index(self.state.sort) if self.state.sort in keys else 0
        self.sort_by(keys[(index + step) % len(keys)])

    def sort_by(self, column: str, reverse: bool | None = None) -> None:
        """Sort by a column; numbers start largest first, text A to Z."""
        numeric = {c.key for c in view.columns_for(self.state.grouping) if c.numeric}
        if reverse is None:
            reverse = column in numeric
        self.set_state(sort=column, reverse=reverse)

    def on_flows_table_sort_requested(self, event: FlowsTable.SortRequested) -> None:
        """A header click sorts by that column; clicking it again reverses."""
        if event.column == self.state.sort:
            self.set_state(reverse=not self.state.reverse)
        else:
            self.sort_by(event.column)

    def action_reverse(self) -> None:
        """Reverse the sort order."""
        self.set_state(reverse=not self.state.reverse)

    def action_focus_alerts(self) -> None:
        """Move the focus to the alerts pane."""
        self.alerts_pane.focus()

    def action_focus_table(self) -> None:
        """Move the focus to the connections table."""
        self.table.focus()

    def action_charts(self) -> None:
        """Show or hide the charts."""
        charts = self.charts
        charts.display = not charts.display
        self._render_charts()

    def action_process(self) -> None:
        """Open the process view of the selected row's process."""
        name = self._selected_process()
        if name is not None:
            self.open_process(name)

    # ------------------------------------------------------------------ drill-down

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """Enter on a flow opens its detail, on a group its process view, on an alert its detail."""
        if isinstance(event.data_table, AlertsPane):
            alert = event.data_table.selected()
            if alert is not None:
                self.open_alert(alert)
            return
        if not isinstance(event.data_table, FlowsTable):
            return
        row = event.data_table.selected()
        if row is None:
            return
        if row.flow is not None:
            self.open_flow(row.flow)
        elif row.group is not None and self.state.grouping is view.Grouping.PROCESS:
            self.open_process(row.group)
        elif row.group is not None:
            grouping = self.state.grouping.value
            term = "country" if grouping == "country" else "asn"
            value = row.group.split()[0].removeprefix("AS")
            self.set_state(grouping=view.Grouping.NONE, query=query.parse(f"{term}:{value}"))

    async def action_quit(self) -> None:
        """Stop the feed, then exit (Textual restores the terminal)."""
        self.feed.close()
        self.workers.cancel_group(self, "feed")
        self.exit()

    def on_unmount(self) -> None:
        """Make sure the feed thread ends with the app."""
        self.feed.close()
