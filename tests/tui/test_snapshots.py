"""How the dashboard looks: SVG snapshots at fixed sizes (pytest-textual-snapshot).

Fixed clock, a recorded feed advanced one snapshot at a time (so the charts' history is the
same on every run), the filter input's cursor blink off, no network. Update after reviewing
a deliberate change with `pytest tests/tui/test_snapshots.py --snapshot-update`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from textual.pilot import Pilot

from netwatch.model import Finding, Severity
from netwatch.ui.app import NetwatchApp
from netwatch.ui.screens.check import CheckScreen
from tests.tui.helpers import NOW, StepFeed, recording, wait_for

pytestmark = pytest.mark.tui


def dashboard(
    name: str = "vpngate.jsonl", mode: str = "replay", findings: list[Finding] | None = None
) -> tuple[NetwatchApp, Any]:
    feed = StepFeed()
    check = None if findings is None else lambda: findings
    app = NetwatchApp(feed, now=lambda: NOW, mode_label=mode, check=check)
    app.filter_box.cursor_blink = False
    snaps = recording(name)

    async def play(pilot: Pilot[None]) -> None:
        for snap in snaps:
            feed.push(snap)
            await wait_for(
                pilot, lambda s=snap: app.snapshot is not None and app.snapshot.seq == s.seq
            )
        await pilot.pause()

    return app, play


def then(
    first: Callable[[Pilot[None]], Awaitable[None]], *keys: str
) -> Callable[[Pilot[None]], Awaitable[None]]:
    async def run(pilot: Pilot[None]) -> None:
        await first(pilot)
        await pilot.press(*keys)
        await pilot.pause()

    return run


def test_main_screen_120x40(snap_compare: Any) -> None:
    app, play = dashboard()
    assert snap_compare(app, terminal_size=(120, 40), run_before=play)


def test_main_screen_80x24_unprivileged(snap_compare: Any) -> None:
    app, play = dashboard(mode="local")
    assert snap_compare(app, terminal_size=(80, 24), run_before=play)


def test_alert_detail(snap_compare: Any) -> None:
    app, play = dashboard()
    assert snap_compare(app, terminal_size=(100, 40), run_before=then(play, "a", "enter"))


def test_grouped_by_country_with_filter(snap_compare: Any) -> None:
    app, play = dashboard("privileged.jsonl", mode="daemon")
    keys = ("g", "g", "slash", *"-country:US", "enter")
    assert snap_compare(app, terminal_size=(100, 30), run_before=then(play, *keys))


def test_process_view(snap_compare: Any) -> None:
    app, play = dashboard()
    keys = ("slash", *"proc:vpnserver", "enter", "o")
    assert snap_compare(app, terminal_size=(100, 30), run_before=then(play, *keys))


FINDINGS = [
    Finding(
        "softether.vpngate_relay:/var/lib/softether/vpn_server.config",
        Severity.HIGH,
        "VPN Gate relay: a VPNGATE hub in the SoftEther server",
        ("/var/lib/softether/vpn_server.config: hub VPNGATE", "vpnserver (pid 812) is running"),
        "Delete the VPNGATE hub (vpncmd localhost /SERVER /CMD HubDelete VPNGATE) and stop the "
        "server for good: systemctl disable --now softether-vpnserver.",
    ),
    Finding("package:openvpn", Severity.INFO, "openvpn 2.6.3 is installed, not running"),
]


def test_check_screen_80x24(snap_compare: Any) -> None:
    app, play = dashboard(mode="local", findings=FINDINGS)

    async def open_check(pilot: Pilot[None]) -> None:
        await play(pilot)
        await pilot.press("v")
        screen = app.screen
        assert isinstance(screen, CheckScreen)
        await wait_for(pilot, lambda: screen.done)
        await pilot.pause()

    assert snap_compare(app, terminal_size=(80, 24), run_before=open_check)
