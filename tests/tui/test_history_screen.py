"""The history screen (`h`) on a recorded store: the range, the stacked chart, top programs
with where and when, countries, providers, "while you were away"; at 80x24 and larger;
unavailable and damaged stores are one line."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Static

from netwatch.cli.history import StoreHistory, last_attached
from netwatch.cli.watch import history_source
from netwatch.store.rollup import HOUR, SPAN, UsageTotal
from netwatch.ui import fmt
from netwatch.ui.app import NetwatchApp
from netwatch.ui.history_text import (
    COLUMNS,
    FILLS,
    RANGES,
    columns_of,
    custom,
    series,
    stacked_chart,
    window,
)
from netwatch.ui.screens.history import UNAVAILABLE, HistoryScreen
from tests.history_store import AWAY_SINCE, END, per_minute, write_history_store
from tests.tui.helpers import NOW, replay, wait_for

pytestmark = pytest.mark.tui


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_history_store(tmp_path_factory.mktemp("history") / "n.db")


def text_of(app: NetwatchApp, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


async def open_history(app: NetwatchApp, pilot: Pilot[None]) -> HistoryScreen:
    await pilot.press("h")
    screen = app.screen
    assert isinstance(screen, HistoryScreen)
    await wait_for(pilot, lambda: screen.done, 20)
    await pilot.pause()
    return screen


def app_on(store: Path) -> NetwatchApp:
    return NetwatchApp(replay(), now=lambda: NOW, history=StoreHistory(store, AWAY_SINCE))


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_the_last_day_at_80x24_and_larger(store: Path, size: tuple[int, int]) -> None:
    app = app_on(store)
    async with app.run_test(size=size) as pilot:
        screen = await open_history(app, pilot)
        assert "Last day" in text_of(app, "#history-status")
        chart = text_of(app, "#history-chart").splitlines()
        assert len(chart) == 6 + 2  # rows, the axis with "per 20m", the legend
        assert "per 20m" in chart[6]
        assert all(len(line) <= 80 for line in chart)
        assert FILLS[0] in "".join(chart[:6])  # the largest program's fill is drawn
        legend = chart[-1]
        assert legend.startswith(f"{FILLS[0]} backup ") or legend.startswith(f"{FILLS[0]} firefox")
        assert "other" in legend  # six programs: four by name and the rest
        table = screen.query_one("#history-programs", DataTable)
        names = [str(table.get_row_at(i)[0]) for i in range(table.row_count)]
        assert set(names) == {"firefox", "curl", "vpnclient", "ssh", "backup", "updater"}
        tops = text_of(app, "#history-tops")
        assert "Countries:" in tops and "US " in tops and "Providers:" in tops
        away = text_of(app, "#history-away")
        assert "While you were away" in away
        assert "new programs: vpnclient" in away and "new countries: JP" in away
        assert "alerts: 1 (1 high)" in away
        # Every part is on the screen: nothing pushed below the footer.
        bottom = screen.query_one("#history-away", Static).region.bottom
        assert bottom <= size[1] - 1


async def test_a_selected_program_shows_where_and_when(store: Path) -> None:
    app = app_on(store)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_history(app, pilot)
        table = screen.query_one("#history-programs", DataTable)
        names = [str(table.get_row_at(i)[0]) for i in range(table.row_count)]
        row = names.index("vpnclient")
        table.move_cursor(row=row)
        await wait_for(pilot, lambda: "192.0.2.44" in text_of(app, "#history-where"), 20)
        where = text_of(app, "#history-where")
        assert (
            where.startswith("/usr/bin/vpnclient") and "JP" in where and "VPN Gate Relay" in where
        )
        when = where.splitlines()[1].removeprefix("when ")
        # Online only in the last three hours of the day: its bars are at the end.
        assert when[: len(when) * 3 // 4].strip() == "" and when.strip()


async def test_range_keys_and_back(store: Path) -> None:
    app = app_on(store)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_history(app, pilot)
        await pilot.press("w")
        await wait_for(pilot, lambda: screen.done and screen.range.name == "week", 20)
        await wait_for(pilot, lambda: "Last week" in text_of(app, "#history-status"), 20)
        assert "per 3h" in text_of(app, "#history-chart")
        await pilot.press("h")
        await wait_for(pilot, lambda: "Last hour" in text_of(app, "#history-status"), 20)
        chart = text_of(app, "#history-chart")
        assert "per 1m" in chart and "vpnclient" in chart  # busy in the last hour
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, HistoryScreen)


async def test_without_a_store_and_with_a_damaged_one_it_says_so(tmp_path: Path) -> None:
    app = NetwatchApp(replay(), now=lambda: NOW, mode_label="replay")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("h")
        await pilot.pause()
        assert text_of(app, "#history-status") == UNAVAILABLE
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"not a database" * 400)
    app = NetwatchApp(replay(), now=lambda: NOW, history=StoreHistory(bad, None))
    async with app.run_test(size=(80, 24)) as pilot:
        await open_history(app, pilot)
        status = text_of(app, "#history-status")
        assert status.startswith("History not available: ") and "not a usable" in status
        assert "\n" not in status


def test_a_stacked_column_is_as_tall_as_its_total_and_ordered_like_the_legend() -> None:
    data = [("a", [10, 0, 5]), ("b", [10, 4, 0]), ("other", [0, 0, 5])]
    lines = stacked_chart(data, 4).plain.splitlines()
    columns = ["".join(line[6 + c] for line in reversed(lines)) for c in range(3)]
    assert columns == [FILLS[0] * 2 + FILLS[1] * 2, FILLS[1] + "   ", FILLS[0] + FILLS[2] + "  "]
    assert len(lines) == 4 and lines[0].startswith("  20B") and lines[-1].startswith("    0")


def test_series_keeps_four_programs_and_sums_the_rest() -> None:
    totals = [
        UsageTotal((f"p{i}", None), i * 10, 0, 0, 0, 0, at=1000 + 60 * (i % 2)) for i in range(1, 7)
    ]
    got = series(totals, 1000, 60, 2)
    assert [name for name, _ in got] == ["p6", "p5", "p4", "p3", "other"]
    assert dict(got)["other"] == [20, 10]  # p2 in the first column, p1 in the second


def test_a_range_ending_before_the_store_began_moves_to_the_store() -> None:
    r = RANGES["day"]
    assert window(r, 100_000.0, (0, 200_000)) == (14_400, 100_800, False)  # on 20-minute steps
    since, until, moved = window(r, 10 * 86400.0, (0, 3600))
    assert (since, until, moved) == (3600 - 86400, 3600, True)


def test_last_attached_is_remembered_per_store(tmp_path: Path, store: Path) -> None:
    state = tmp_path / "state" / "dashboard.json"
    assert last_attached(store, 100.0, state) is None
    assert last_attached(store, 200.0, state) == 100.0
    assert state.stat().st_mode & 0o777 == 0o600
    state.write_text("{ damaged")
    assert last_attached(store, 300.0, state) is None
    source = history_source(store, "replay", END + 10.0)  # --db: also in a replay
    assert isinstance(source, StoreHistory) and source.away_since == END - 86400 + 10.0
    assert history_source(None, "replay", END) is None


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_history_screen_snapshot(snap_compare: Any, store: Path, size: tuple[int, int]) -> None:
    """How it looks (pytest-textual-snapshot; `--snapshot-update` after a deliberate change)."""
    app = app_on(store)

    async def open_it(pilot: Pilot[None]) -> None:
        await open_history(app, pilot)
        screen = app.screen
        assert isinstance(screen, HistoryScreen)
        await wait_for(pilot, lambda: "192.0.2" in text_of(app, "#history-where") or
                       "198.51" in text_of(app, "#history-where"), 20)  # fmt: skip
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=open_it)


def _iso(ts: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


async def custom_range(app: NetwatchApp, pilot: Pilot[None], since: str, until: str) -> None:
    """Press `c`, type the two ends and Enter."""
    screen = app.screen
    assert isinstance(screen, HistoryScreen)
    await pilot.press("c")
    await pilot.pause()
    since_box = screen.query_one("#history-since", Input)
    assert since_box.has_focus
    since_box.value = ""
    await pilot.press(*since)
    until_box = screen.query_one("#history-until", Input)
    until_box.value = until
    await pilot.press("enter")
    await pilot.pause()


async def test_a_custom_range_shows_only_its_window_with_a_step_that_follows_the_span(
    store: Path,
) -> None:
    app = app_on(store)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_history(app, pilot)
        # Two hours ending four hours before the end: vpnclient was not online yet.
        since, until = END - 6 * HOUR, END - 4 * HOUR
        await custom_range(app, pilot, _iso(since), _iso(until))
        await wait_for(pilot, lambda: screen.done and screen.range.name == "custom", 20)
        await wait_for(pilot, lambda: "Custom:" in text_of(app, "#history-status"), 20)
        assert text_of(app, "#history-error") == ""
        table = screen.query_one("#history-programs", DataTable)
        rows = {str(table.get_row_at(i)[0]): table.get_row_at(i) for i in range(table.row_count)}
        assert "vpnclient" not in rows and "firefox" in rows
        firefox = sum(per_minute("firefox", m) for m in range(since, until, SPAN))
        assert str(rows["firefox"][1]) == fmt.size(firefox)
        chart = text_of(app, "#history-chart")
        assert "per 2m" in chart  # 120 minutes do not fit 72 columns; 60 two-minute ones do
        assert all(len(line) <= 80 for line in chart.splitlines())
        # The last half hour: minute columns, and vpnclient is there.
        await custom_range(app, pilot, "30m", "")
        await wait_for(pilot, lambda: "per 1m" in text_of(app, "#history-chart"), 20)
        names = [str(table.get_row_at(i)[0]) for i in range(table.row_count)]
        assert "vpnclient" in names
        # Two whole days: hour columns, read from the day before's hour rows too.
        await custom_range(app, pilot, _iso(END - 2 * 86400), _iso(END))
        await wait_for(pilot, lambda: "per 1h" in text_of(app, "#history-chart"), 20)
        await pilot.press("d")  # the fixed ranges still work after a custom one
        await wait_for(pilot, lambda: "Last day" in text_of(app, "#history-status"), 20)


async def test_a_bad_custom_value_is_one_error_line_and_the_screen_stays_usable(
    store: Path,
) -> None:
    app = app_on(store)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_history(app, pilot)
        before = text_of(app, "#history-status")
        await custom_range(app, pilot, "yesterday-ish", "")
        error = text_of(app, "#history-error")
        assert error.startswith("Custom range: 'yesterday-ish' is not an ISO 8601 time")
        assert "\n" not in error.strip()
        assert text_of(app, "#history-status") == before  # still the last day
        # With the inputs and the error line open, everything still fits 80x24.
        assert screen.query_one("#history-error", Static).region.height == 1
        assert screen.query_one("#history-away", Static).region.bottom <= 23
        assert isinstance(app.screen, HistoryScreen)
        # Since after until is one line too.
        await custom_range(app, pilot, "1h", "2h")
        assert text_of(app, "#history-error") == "Custom range: since must be before until"
        # Escape closes the inputs (not the screen) and clears the line; keys work again.
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, HistoryScreen)
        assert text_of(app, "#history-error") == ""
        assert not screen.query_one("#history-custom").has_class("open")
        await pilot.press("w")
        await wait_for(pilot, lambda: "Last week" in text_of(app, "#history-status"), 20)


def test_custom_steps_fit_the_chart() -> None:
    for span in (60, 3600, 7200, 86400, 3 * 86400, 30 * 86400, 400 * 86400):
        for start in (END, END + 17):
            r = custom(start, start + span)
            start_col, columns = columns_of(start, start + span, r.step)
            assert columns <= COLUMNS and start_col <= start
            assert r.step % 60 == 0 and (r.step < 3600 or r.step % 3600 == 0)
            assert r.step < 86400 or r.step % 86400 == 0
    assert custom(END, END + 1800).step == 60
    assert custom(END, END + 2 * 86400).step == 3600


async def _screen_text(app: NetwatchApp) -> tuple[str, list[str], str]:
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_history(app, pilot)
        table = screen.query_one("#history-programs", DataTable)
        names = [
            f"{table.get_row_at(i)[0]} {table.get_row_at(i)[1]}" for i in range(table.row_count)
        ]
        return text_of(app, "#history-status"), names, text_of(app, "#history-away")


async def test_over_the_daemon_socket_the_screen_shows_what_the_file_shows(
    tmp_path: Path, store: Path
) -> None:
    """Attached to a daemon whose store this user may not read, the screen asks the daemon
    (`DaemonHistory`): the real loop's server and worker on the recorded store."""
    import shutil
    import threading

    from netwatch.clock import SystemClock
    from netwatch.daemon.client import DaemonHistory
    from netwatch.daemon.server import SnapshotServer
    from netwatch.daemon.service import Service, ServiceOptions
    from netwatch.store import Store

    db = tmp_path / "copy.db"
    shutil.copy(store, db)
    service = Service(
        None, None, Store(db), SnapshotServer(tmp_path / "n.sock"), SystemClock(),  # type: ignore[arg-type]  # no ticks here
        options=ServiceOptions(flow_flush=3600.0),
    )  # fmt: skip
    stop = threading.Event()

    def serve() -> None:  # the loop's serving part (run() also ticks, and wants the main thread)
        while not stop.is_set():
            service.server.poll(0.02)
            service.answer_history()

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    source = DaemonHistory(tmp_path / "n.sock", AWAY_SINCE)
    try:
        over_socket = await _screen_text(NetwatchApp(replay(), now=lambda: NOW, history=source))
    finally:
        source.close()
        stop.set()
        server.join(5)
        service.history.close()  # type: ignore[union-attr]  # made by default
        service.server.close()
    from_file = await _screen_text(app_on(store))
    assert over_socket == from_file
    assert "Last day" in over_socket[0] and len(over_socket[1]) == 6
    assert "new programs: vpnclient" in over_socket[2]


def test_attached_to_a_daemon_whose_store_is_not_readable_the_screen_asks_the_daemon(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from netwatch.daemon.client import DaemonHistory

    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))  # no store of this user's
    monkeypatch.setattr("netwatch.cli.export.SERVICE_DB", tmp_path / "none" / "netwatch.db")
    sock = tmp_path / "n.sock"
    source = history_source(None, "daemon", END, sock)
    assert isinstance(source, DaemonHistory) and source.path == sock
    assert source.away_since == END - 86400  # the first attach: the last day
    assert history_source(None, "local", END) is None  # no daemon: nothing to ask
