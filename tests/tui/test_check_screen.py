"""The check screen (`v`): injected findings shown with severity words, detail, empty and
unavailable states, a failing source, and Escape back to the dashboard."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import pytest
from rich.text import Text
from textual.pilot import Pilot
from textual.widgets import DataTable, Static

from netwatch.cli.check import check_machine
from netwatch.cli.watch import check_source
from netwatch.model import Finding, Severity
from netwatch.ui.app import NetwatchApp
from netwatch.ui.screens.check import NOTHING_FOUND, UNAVAILABLE, CheckScreen
from tests.locks import softether_lock
from tests.softether_files import SERVER_CONFIG
from tests.tui.helpers import NOW, replay, wait_for

pytestmark = pytest.mark.tui

SIZE = (100, 30)

RELAY = Finding(
    "softether.vpngate_relay:/var/lib/softether/vpn_server.config",
    Severity.CRITICAL,
    "This computer is a VPN Gate relay",
    ("/var/lib/softether/vpn_server.config: hub VPNGATE", "vpnserver (pid 812) runs"),
    "Delete the VPNGATE hub and stop the server.",
)
PACKAGE = Finding(
    "package:openvpn",
    Severity.LOW,
    "openvpn 2.6.3 is installed",
    ("dpkg: openvpn 2.6.3 installed, not running",),
    "Remove it if you did not install it on purpose.",
)


def text_of(app: NetwatchApp, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


async def open_check(app: NetwatchApp, pilot: Pilot[None], limit: float = 10.0) -> CheckScreen:
    """Press `v` and wait until the check's result (or failure) is on the screen."""
    await pilot.press("v")
    screen = app.screen
    assert isinstance(screen, CheckScreen)
    await wait_for(pilot, lambda: screen.done, limit)
    await pilot.pause()
    return screen


def rows(app: NetwatchApp) -> list[list[str]]:
    table = app.screen.query_one("#check-findings", DataTable)
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


async def test_v_opens_the_findings_with_severity_words_and_escape_closes() -> None:
    calls = []

    def source() -> Sequence[Finding]:
        calls.append(threading.current_thread() is threading.main_thread())
        return [RELAY, PACKAGE]

    app = NetwatchApp(replay(), now=lambda: NOW, check=source)
    async with app.run_test(size=SIZE) as pilot:
        await open_check(app, pilot)
        assert calls == [False]  # called once, off the UI thread
        assert rows(app) == [
            ["CRITICAL", "This computer is a VPN Gate relay"],
            ["LOW", "openvpn 2.6.3 is installed"],
        ]
        detail = text_of(app, "#check-detail-text")
        assert "CRITICAL" in detail and "hub VPNGATE" in detail
        assert "What to do" in detail and "Delete the VPNGATE hub" in detail
        assert "2 finding(s)" in text_of(app, "#check-status")
        await pilot.press("down")
        await pilot.pause()
        detail = text_of(app, "#check-detail-text")
        assert "openvpn 2.6.3 installed, not running" in detail
        assert "Remove it" in detail and "VPNGATE" not in detail
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, CheckScreen)
        await pilot.press("v", "R")
        await wait_for(pilot, lambda: len(calls) == 3)


async def test_severity_is_coloured() -> None:
    app = NetwatchApp(replay(), now=lambda: NOW, check=lambda: [RELAY, PACKAGE])
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_check(app, pilot)
        table = screen.query_one("#check-findings", DataTable)
        cells = [table.get_row_at(i)[0] for i in range(2)]
        assert all(isinstance(c, Text) for c in cells)
        assert [str(c.style) for c in cells] == ["bold white on red", "cyan"]


async def test_an_empty_check_says_nothing_was_found() -> None:
    app = NetwatchApp(replay(), now=lambda: NOW, check=list)
    async with app.run_test(size=SIZE) as pilot:
        await open_check(app, pilot)
        assert text_of(app, "#check-status") == NOTHING_FOUND
        assert rows(app) == []


async def test_without_a_source_the_check_is_unavailable() -> None:
    app = NetwatchApp(replay(), now=lambda: NOW, mode_label="replay")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("v")
        await pilot.pause()
        assert isinstance(app.screen, CheckScreen)
        assert "not available" in text_of(app, "#check-status")
        assert text_of(app, "#check-status") == UNAVAILABLE


async def test_a_failing_check_is_one_line_not_a_crash() -> None:
    def source() -> Sequence[Finding]:
        raise PermissionError("/var/lib/softether: Permission denied")

    app = NetwatchApp(replay(), now=lambda: NOW, check=source)
    async with app.run_test(size=SIZE) as pilot:
        await open_check(app, pilot)
        status = text_of(app, "#check-status")
        assert status == "The check failed: /var/lib/softether: Permission denied"
        await pilot.press("escape", "q")
        await pilot.pause()
    assert app.return_code in (0, None)


def test_watch_runs_the_check_on_this_machine_except_in_a_replay() -> None:
    assert check_source("local") is check_machine
    assert check_source("daemon") is check_machine
    assert check_source("replay") is None


async def test_the_real_check_finds_a_relay_config_on_the_screen(tmp_path: Path) -> None:
    d = tmp_path / "se"
    d.mkdir()
    (d / "vpn_server.config").write_text(SERVER_CONFIG, encoding="utf-8")
    source = partial(check_machine, tmp_path / "none.db", None, [str(d)])
    with softether_lock():  # a live SoftEther test's running vpnserver would add its own dir
        app = NetwatchApp(replay(), now=lambda: NOW, check=source)
        async with app.run_test(size=SIZE) as pilot:
            await open_check(app, pilot, limit=60)
            found = [r for r in rows(app) if "VPN Gate relay" in r[1]]
            assert [r[0] for r in found] == ["HIGH"], rows(app)
            assert f"no alert store at {tmp_path}" in " ".join(r[1] for r in rows(app))
