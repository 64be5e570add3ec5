"""The history screen (`h`): the past from the store, as GlassWire's main screen shows it.

A range (`h` last hour, `d` day, `w` week, `c` custom: a since and an until typed as
`netwatch history --since/--until` takes them, `timetext.parse_when`; a bad one is one error
line and the screen stays as it was), a stacked throughput chart by program over it,
the top programs (a table: the highlighted one's remotes and its bytes over the range show
beside it), countries and network providers with bytes, and "while you were away": programs
that went online for the first time, new countries and alerts since the dashboard was last
opened on this store.

The screen never opens the store itself: it calls the injected `HistorySource` (wired by
`cli.watch` to the store file: `--db FILE`, or the daemon's store when this user can read it)
in a thread worker, so a slow disk does not freeze the dashboard. Without a source it says why.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Static
from textual.worker import Worker, WorkerState

from netwatch.store.rollup import Away, UsageAnswer, UsageQuery, UsageTotal
from netwatch.timetext import parse_when
from netwatch.ui import fmt
from netwatch.ui.history_text import (
    RANGES,
    Range,
    away_text,
    axis,
    columns_of,
    custom,
    legend,
    series,
    stacked_chart,
    top_line,
    where_text,
    window,
)

CHART_ROWS = 6
UNAVAILABLE = "No usage history here: open the dashboard with --db FILE (a netwatch store)."


class HistorySource(Protocol):
    """Where the screen reads the past from (`cli.history.StoreHistory` on a store file)."""

    def usage(self, query: UsageQuery) -> UsageAnswer:
        """Totals for a query (raises NetwatchError with one line on a bad store)."""
        ...

    def bounds(self) -> tuple[int, int] | None:
        """[start, end) of the stored history, None when there is none."""
        ...

    def away(self) -> Away | None:
        """What happened since the dashboard was last opened on this store (None: unknown)."""
        ...


@dataclass(frozen=True, slots=True)
class Loaded:
    """One range's answers, fetched together off the UI thread."""

    range: Range
    since: int
    until: int
    moved: bool
    start: int
    """Start of the chart's first column (`since` rounded down to the step)."""
    columns: int
    truncated: bool
    """An answer held only part of the totals (the daemon's bounds)."""
    chart: list[tuple[str, list[int]]]
    programs: list[UsageTotal]
    countries: list[UsageTotal]
    providers: list[UsageTotal]
    away: Away | None


def load(source: HistorySource, r: Range, now: float) -> Loaded:
    """Every query the screen shows for range `r` (runs in a worker thread)."""
    since, until, moved = window(r, now, source.bounds())
    start, columns = columns_of(since, until, r.step)
    steps = source.usage(UsageQuery(since=since, until=until, by="process", step=r.step))
    answers = [
        source.usage(UsageQuery(since=since, until=until, by=by, top=top))
        for by, top in (("process", 20), ("country", 8), ("asn", 8))
    ]
    return Loaded(
        range=r,
        since=since,
        until=until,
        moved=moved,
        start=start,
        columns=columns,
        chart=series(steps.totals, start, r.step, columns),
        truncated=any(a.truncated for a in (steps, *answers)),
        programs=answers[0].totals,
        countries=answers[1].totals,
        providers=answers[2].totals,
        away=source.away(),
    )


class HistoryScreen(Screen[None]):
    """Range, chart, top programs with where/when, countries, providers, while away."""

    DEFAULT_CSS = """
    HistoryScreen #history-chart { height: auto; }
    HistoryScreen #history-lower { height: 1fr; min-height: 4; }
    HistoryScreen #history-programs { width: 1fr; min-width: 30; }
    HistoryScreen #history-where { width: 1fr; padding: 0 1; }
    HistoryScreen #history-away { height: auto; max-height: 3; }
    HistoryScreen #history-custom { height: auto; display: none; }
    HistoryScreen #history-custom.open { display: block; }
    HistoryScreen #history-custom Input { width: 1fr; border: none; height: 1; padding: 0 1; }
    HistoryScreen #history-error {
        height: 1; color: $error; display: none; text-wrap: nowrap; text-overflow: ellipsis;
    }
    HistoryScreen #history-error.shown { display: block; }
    """
    BINDINGS = [  # noqa: RUF012  # Textual declares BINDINGS as a mutable class attribute
        Binding("escape,q,backspace", "close", "Back"),
        Binding("h", "range('hour')", "Hour"),
        Binding("d", "range('day')", "Day"),
        Binding("w", "range('week')", "Week"),
        Binding("c", "custom", "Custom"),
        Binding("R", "reload", "Reload", show=False),
    ]

    def __init__(
        self,
        source: HistorySource | None,
        *,
        now: Callable[[], float] = time.time,
        start: str = "day",
    ) -> None:
        super().__init__()
        self.source = source
        self.now = now
        self.range = RANGES[start]
        self.loaded: Loaded | None = None
        self.done = False
        self._where_for: str | None = None

    def compose(self) -> ComposeResult:
        """Title, status, chart, programs beside where/when, top lines, while away, footer."""
        yield Static(Text(" History ", style="bold reverse"), classes="screen-title")
        with Vertical():
            yield Static(id="history-status")
            with Horizontal(id="history-custom"):
                yield Input(placeholder="since: 3h, 2d or 2024-05-01T10:00Z", id="history-since")
                yield Input(placeholder="until: empty for now", id="history-until")
            yield Static(id="history-error")
            yield Static(id="history-chart")
            with Horizontal(id="history-lower"):
                yield DataTable(id="history-programs", cursor_type="row")
                yield Static(id="history-where")
            yield Static(id="history-tops")
            yield Static(id="history-away")
        yield Footer()

    def on_mount(self) -> None:
        """Set the table's columns and load the first range."""
        self.query_one("#history-programs", DataTable).add_columns("Program", "Total", "Conns")
        self.action_reload()

    def action_range(self, name: str) -> None:
        """Show another range."""
        self.range = RANGES[name]
        self.action_reload()

    def action_custom(self) -> None:
        """Open the since/until inputs (Enter applies them, Escape closes them)."""
        self.query_one("#history-custom").add_class("open")
        self.query_one("#history-since", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Enter in either input: apply the custom range, or say in one line what is wrong."""
        event.stop()
        since_text = self.query_one("#history-since", Input).value
        until_text = self.query_one("#history-until", Input).value
        error = self.query_one("#history-error", Static)
        error.add_class("shown")
        now = self.now()
        try:
            since = parse_when(since_text, now) if since_text.strip() else None
            until = parse_when(until_text, now) if until_text.strip() else now
        except ValueError as exc:
            error.update(Text(f"Custom range: {exc}", no_wrap=True, overflow="ellipsis"))
            return
        if since is None:
            error.update(Text("Custom range: type a since (3h, 2d or an ISO 8601 time)"))
            return
        if since >= until:
            error.update(Text("Custom range: since must be before until", no_wrap=True))
            return
        error.update("")
        error.remove_class("shown")
        self.query_one("#history-custom").remove_class("open")
        self.range = custom(since, until)
        self.action_reload()

    def action_reload(self) -> None:
        """Ask the source again (the daemon may have written more since)."""
        if self.source is None:
            self.done = True
            self._status(UNAVAILABLE)
            return
        self.done = False
        self._status(f"Reading {_named(self.range)}...")
        self.fetch(self.source, self.range, self.now())

    @work(thread=True, exclusive=True, group="history", exit_on_error=False)
    def fetch(self, source: HistorySource, r: Range, now: float) -> Loaded:
        """Query off the UI thread; the result arrives as a worker state change."""
        return load(source, r, now)

    @work(thread=True, exclusive=True, group="history-where", exit_on_error=False)
    def fetch_where(
        self, source: HistorySource, loaded: Loaded, program: str
    ) -> tuple[str, list[UsageTotal], list[int]]:
        """The selected program's remotes and bytes per step over the range."""
        q = UsageQuery(since=loaded.since, until=loaded.until, process=program)
        remotes = source.usage(replace(q, by="remote", top=6)).totals
        steps = source.usage(replace(q, by="process", step=loaded.range.step))
        step, columns = loaded.range.step, loaded.columns
        when = [0] * columns
        for t in steps.totals:
            if t.at is not None and 0 <= (t.at - loaded.start) // step < columns:
                when[(t.at - loaded.start) // step] += t.total
        return program, remotes, when

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """Show what a worker brought, or the one line it failed with."""
        group = event.worker.group
        if group not in ("history", "history-where"):
            return
        if event.state is WorkerState.ERROR:
            self.done = True
            self._status(f"History not available: {event.worker.error}")
            return
        if event.state is not WorkerState.SUCCESS or event.worker.result is None:
            return
        if group == "history":
            self.show(event.worker.result)
        else:
            program, remotes, when = event.worker.result
            width = self.query_one("#history-where", Static).content_size.width or 40
            self.query_one("#history-where", Static).update(
                where_text(program, remotes, when, width)
            )

    def show(self, loaded: Loaded) -> None:
        """Draw one range's answers."""
        self.loaded = loaded
        self._where_for = None
        r = loaded.range
        width = self.size.width or 80
        note = f" (the store's last {r.name})" if loaded.moved else ""
        if loaded.truncated:
            note += " (the daemon sent only part)"
        title = "Custom" if r.fixed else f"Last {r.name}"
        self._status(f"{title}: {_at(loaded.since)} to {_at(loaded.until)}{note}")
        chart = Text(no_wrap=True, overflow="crop")
        if any(sum(v) for _, v in loaded.chart):
            chart.append_text(stacked_chart(loaded.chart, CHART_ROWS))
            chart.append("\n")
            chart.append_text(axis(loaded.since, loaded.until, loaded.columns, r.step))
            chart.append("\n")
            chart.append_text(legend(loaded.chart))
        else:
            chart.append("No traffic stored in this range.", style="dim")
        self.query_one("#history-chart", Static).update(chart)
        table = self.query_one("#history-programs", DataTable)
        table.clear()
        for t in loaded.programs:
            table.add_row(_program(t), fmt.size(t.total), str(t.connections))
        tops = top_line("Countries", loaded.countries, width)
        tops.append("\n")
        tops.append_text(top_line("Providers", loaded.providers, width, index=1))
        self.query_one("#history-tops", Static).update(tops)
        self.query_one("#history-away", Static).update(away_text(loaded.away))
        self.done = True
        if loaded.programs:
            table.focus()
            self._where(0)
        else:
            self.query_one("#history-where", Static).update("")

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        """Show where and when the highlighted program talked."""
        event.stop()
        self._where(event.cursor_row)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """Enter keeps the dashboard's Enter from seeing this table."""
        event.stop()
        self._where(event.cursor_row)

    def _where(self, row: int) -> None:
        loaded = self.loaded
        if loaded is None or self.source is None or not 0 <= row < len(loaded.programs):
            return
        t = loaded.programs[row]
        program = str(t.key[1] or t.key[0]) if len(t.key) > 1 else str(t.key[0])
        if program == self._where_for:
            return
        self._where_for = program
        self.fetch_where(self.source, loaded, program)

    def _status(self, line: str) -> None:
        self.query_one("#history-status", Static).update(Text(line, no_wrap=True))

    def action_close(self) -> None:
        """Close the custom range's inputs when open, else back to the dashboard."""
        box = self.query_one("#history-custom")
        if box.has_class("open"):
            box.remove_class("open")
            self.query_one("#history-error", Static).update("")
            self.query_one("#history-error", Static).remove_class("shown")
            self.query_one("#history-programs", DataTable).focus()
            return
        self.dismiss(None)


def _named(r: Range) -> str:
    return "the custom range" if r.fixed else f"the last {r.name}"


def _at(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%MZ", time.gmtime(ts))


def _program(t: UsageTotal) -> str:
    name = t.key[0] if t.key else None
    return "(unknown)" if name is None else str(name)
