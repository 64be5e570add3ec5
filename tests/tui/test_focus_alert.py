"""`netwatch watch --alert ID`: the dashboard opens on one alert (a notification's "open").

Pilot tests on the recorded VPN Gate story (tests/data/snapshots) with its alerts given the ids
the engine makes (`detect.suppress.alert_id`, the shape `--alert` accepts): the alert is in the
feed, comes on a later tick, or never comes. One real terminal (tmux) runs the command itself.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from netwatch import codec
from netwatch.daemon.client import DaemonFeed
from netwatch.daemon.server import SnapshotServer
from netwatch.detect.suppress import alert_id
from netwatch.feed import ReplayFeed
from netwatch.model import Snapshot
from netwatch.model.alert import ALERT_ID
from netwatch.stream import StreamEncoder
from netwatch.ui.app import NetwatchApp
from netwatch.ui.focus import AlertFocus
from netwatch.ui.screens.text_screen import TextScreen
from netwatch.ui.widgets.alerts_pane import AlertsPane
from netwatch.ui.widgets.status_bar import StatusBar
from tests.conftest import requires_tools
from tests.tui.helpers import NOW, StepFeed, recording, wait_for
from tests.tui.test_terminal import Terminal, netwatch, quit_and_check_shell

pytestmark = pytest.mark.tui

SIZE = (100, 30)


def engine_ids(snaps: list[Snapshot]) -> list[Snapshot]:
    """The recording with each alert's id as the engine would have made it."""
    return [
        replace(
            s,
            alerts=tuple(
                replace(a, id=alert_id(a.rule_id, a.identifier, a.first_seen)) for a in s.alerts
            ),
        )
        for s in snaps
    ]


SNAPS = engine_ids(recording())
FETCH = SNAPS[1].alerts[0]  # "VPN Gate relay list fetched", medium, from tick 2
RELAY = SNAPS[3].alerts[0]  # "This PC serves as a VPN Gate relay", high, at tick 4 (newer)
UNKNOWN = "vpn.unexpected:0123456789:1700000000"


def detail(app: NetwatchApp) -> TextScreen:
    """The detail screen on top (the test fails when none is open)."""
    screen = app.screen
    assert isinstance(screen, TextScreen)
    return screen


def shown(app: NetwatchApp, snap: Snapshot) -> Callable[[], bool]:
    """Whether the app has taken in this very snapshot (for `wait_for`)."""
    return lambda: app.snapshot is snap


def test_the_recorded_ids_have_the_shape_watch_accepts() -> None:
    assert ALERT_ID.fullmatch(FETCH.id) and ALERT_ID.fullmatch(RELAY.id)
    assert FETCH.title == "VPN Gate relay list fetched" and RELAY.rule_id.endswith("relay_inbound")


async def test_opens_on_a_recorded_alert_selected_with_its_detail() -> None:
    app = NetwatchApp(ReplayFeed(SNAPS), now=lambda: NOW, mode_label="replay", focus_alert=FETCH.id)
    async with app.run_test(size=SIZE) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert detail(app).title_text == "Alert: VPN Gate relay list fetched"
        assert detail(app).body.plain.startswith("[MED] VPN Gate relay list fetched")
        pane = app.query_one(AlertsPane)
        # The relay alert came later and sits on top; the cursor stayed on the one asked for.
        assert [a.id for a in pane.alerts] == [RELAY.id, FETCH.id]
        selected = pane.selected()
        assert selected is not None and selected.id == FETCH.id
        await pilot.press("escape")
        assert app.focused is pane
        assert "waiting for alert" not in app.query_one(StatusBar).plain
        await pilot.press("enter")  # Enter opens what is selected: the same alert
        assert detail(app).title_text == "Alert: VPN Gate relay list fetched"


async def test_an_alert_that_comes_on_a_later_tick_is_opened_when_it_comes() -> None:
    feed = StepFeed()
    app = NetwatchApp(feed, now=lambda: NOW, mode_label="daemon", focus_alert=RELAY.id)
    async with app.run_test(size=SIZE) as pilot:
        status = app.query_one(StatusBar)
        pane = app.query_one(AlertsPane)
        for snap in SNAPS[:3]:  # FETCH arrives at tick 2; RELAY is not there yet
            feed.push(snap)
            await wait_for(pilot, shown(app, snap))
        await pilot.pause()
        assert not isinstance(app.screen, TextScreen)
        assert app.focused is pane  # the alerts, not the connections, have the focus
        line = status.plain.splitlines()[1]
        assert line.startswith(
            f"waiting for alert {RELAY.id}"
        )  # it leads the line: a narrow terminal shows it
        feed.push(SNAPS[3])
        await wait_for(pilot, lambda: isinstance(app.screen, TextScreen))
        assert detail(app).title_text == "Alert: This PC serves as a VPN Gate relay"
        assert "waiting for alert" not in status.plain
        selected = pane.selected()
        assert selected is not None and selected.id == RELAY.id
        feed.close()


async def test_attached_to_a_daemon_the_alert_comes_with_the_first_state(tmp_path: Path) -> None:
    # The service greets a new client with a state of its latest tick and every recent
    # alert (daemon/service.py); the alert the notification named is among them.
    server = SnapshotServer(tmp_path / "netwatch.sock")
    encoder = StreamEncoder(stream="test")
    encoder.encode(SNAPS[0])  # a tick with no alert of its own
    server.set_greeting(lambda: codec.frame(encoder.state((FETCH, RELAY))))
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            server.poll(0.02)

    serving = threading.Thread(target=serve)
    serving.start()
    feed = DaemonFeed(tmp_path / "netwatch.sock")
    app = NetwatchApp(feed, now=lambda: NOW, mode_label="daemon", focus_alert=FETCH.id)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, TextScreen))
            assert detail(app).title_text == "Alert: VPN Gate relay list fetched"
            selected = app.query_one(AlertsPane).selected()
            assert selected is not None and selected.id == FETCH.id
            await wait_for(pilot, lambda: app.snapshot is not None)
            assert app.snapshot is not None and app.snapshot.seq == SNAPS[0].seq  # first state
    finally:
        feed.close()
        stop.set()
        serving.join(timeout=10)
        server.close()


async def test_an_alert_that_never_comes_leaves_a_notice_and_a_usable_dashboard() -> None:
    feed = StepFeed()
    app = NetwatchApp(feed, now=lambda: NOW, mode_label="daemon", focus_alert=UNKNOWN)
    ticks = [
        *SNAPS,
        *(replace(SNAPS[3], seq=5 + i, taken_at=SNAPS[3].taken_at + 1 + i) for i in range(4)),
    ]
    async with app.run_test(size=(80, 24)) as pilot:
        status = app.query_one(StatusBar)
        for snap in ticks:
            feed.push(snap)
            await wait_for(pilot, shown(app, snap))
        await pilot.pause()
        assert status.plain.splitlines()[1].startswith(f"not in the recent alerts: {UNKNOWN}")
        assert not isinstance(app.screen, TextScreen)
        # Still a dashboard: the alerts it has open as usual, the table takes keys.
        await pilot.press("enter")
        assert detail(app).title_text == "Alert: This PC serves as a VPN Gate relay"
        await pilot.press("escape", "t", "g")
        assert app.focused is app.table and app.state.grouping.value == "process"
        assert status.plain.splitlines()[1].startswith("not in the recent alerts")  # it stays
        feed.close()


async def test_a_recording_that_ends_without_the_alert_says_both() -> None:
    app = NetwatchApp(ReplayFeed(SNAPS), now=lambda: NOW, mode_label="replay", focus_alert=UNKNOWN)
    async with app.run_test(size=SIZE) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        line = app.query_one(StatusBar).plain.splitlines()[1]
        assert line.startswith(f"not in the recent alerts: {UNKNOWN}; end of recording")


def test_the_wait_is_a_few_ticks() -> None:
    focus = AlertFocus(UNKNOWN, wait_ticks=2)
    for _ in range(3):
        assert focus.waiting and focus.find({}) is None
        focus.tick()
    assert not focus.waiting and focus.notice == f"not in the recent alerts: {UNKNOWN}"
    assert focus.find({UNKNOWN: FETCH}) is None  # too late: the user has the dashboard now
    plain = AlertFocus(None)
    assert not plain.waiting and plain.notice is None


@pytest.fixture
def tmux(request: pytest.FixtureRequest, repo_root: Path) -> Iterator[Terminal]:
    env = {**os.environ, "TERM": "xterm-256color", "PYTHONPATH": str(repo_root)}
    env.pop("TMUX", None)
    term = Terminal(f"focus-{request.node.name[-12:]}", env)
    term.start(repo_root)
    yield term
    term.kill()


@requires_tools("tmux")
def test_the_command_opens_on_the_alert_in_a_real_terminal(tmux: Terminal, tmp_path: Path) -> None:
    rec = tmp_path / "story.jsonl"
    encoder = StreamEncoder()
    rec.write_bytes(b"".join(codec.frame(encoder.encode(s)) for s in SNAPS))
    tmux.type(netwatch("watch", "--replay", str(rec), "--interval", "0.2", "--alert", FETCH.id))
    screen = tmux.wait_for("Alert: VPN Gate relay list fetched")
    assert "[MED] VPN Gate relay list fetched" in screen
    tmux.keys("Escape")
    tmux.wait_for("This PC serves as a VPN Gate relay")  # the dashboard, with the newer alert
    quit_and_check_shell(tmux)
