"""The history screen in a real terminal (tmux) at 80x24, on a recorded store.

`netwatch watch --replay REC --db STORE` opens the history screen first; the store's history
ended long before the real clock, so the screen shows the store's last day and says so.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from netwatch.store.rollup import HOUR
from tests.conftest import requires_tools
from tests.history_store import END, write_history_store
from tests.tui.helpers import DATA
from tests.tui.test_terminal import Terminal, netwatch, quit_and_check_shell, terminal

pytestmark = [pytest.mark.tui, requires_tools("tmux")]

__all__ = ["terminal"]  # the fixture, imported for this module's tests


def test_history_screen_on_a_recorded_store_at_80x24(terminal: Terminal, tmp_path: Path) -> None:
    store = write_history_store(tmp_path / "n.db")
    terminal.tmux("resize-window", "-t", "main", "-x", "80", "-y", "24")
    terminal.type(
        netwatch("--replay", str(DATA / "vpngate.jsonl"), "--interval", "0.2", "--db", str(store))
    )
    screen = terminal.wait_for("While you were away")
    lines = screen.splitlines()
    assert len(lines) <= 24 and all(len(line) <= 80 for line in lines)
    assert "Last day" in screen and "(the store's last day)" in screen
    assert "█" in screen and "per 20m" in screen  # the chart and its step
    assert "firefox" in screen and "Countries:" in screen and "Providers:" in screen
    assert "Traceback" not in screen
    terminal.keys("w")
    screen = terminal.wait_for("Last week")
    assert "per 3h" in screen
    # A custom range: a bad value is one line, then two hours of the store in minute pairs.
    terminal.keys("c")
    terminal.type("soon")
    screen = terminal.wait_for("Custom range: 'soon' is not an ISO 8601 time")
    assert "Traceback" not in screen and "Last week" in screen
    assert "(1h, 2d)" not in screen  # one line: the rest is cut, not wrapped
    terminal.keys("C-u")  # the input's delete-to-start
    since = time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(END - 2 * HOUR))
    terminal.keys("-l", since)
    terminal.wait_for(since)
    terminal.keys("Tab")  # to the until input, the right half of the row
    # Under load, text sent right after the Tab once reached the since input: wait until
    # the until input holds the cursor (it has focus), bounded.
    deadline = time.monotonic() + 30
    while terminal.cursor()[0] < 40 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert terminal.cursor()[0] >= 40, terminal.cursor()
    terminal.type(time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(END)))
    screen = terminal.wait_for("per 2m")
    assert "Custom: " in screen and "vpnclient" in screen
    lines = screen.splitlines()
    assert len(lines) <= 24 and all(len(line) <= 80 for line in lines)
    terminal.keys("Escape")
    terminal.wait_for("vpnclient 4242")  # back on the dashboard
    quit_and_check_shell(terminal)
