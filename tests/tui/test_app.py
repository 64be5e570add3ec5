"""Pilot tests: NetwatchApp driven by recorded snapshots, a fixed clock and no network."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from textual.coordinate import Coordinate

from netwatch.feed import ReplayFeed
from netwatch.model import Action, Owner, Snapshot, SourceStatus
from netwatch.ui.app import NetwatchApp
from netwatch.ui.screens.process import ProcessScreen
from netwatch.ui.screens.text_screen import TextScreen
from netwatch.ui.view import FLOW_COLUMNS, Grouping
from netwatch.ui.widgets.alerts_pane import AlertsPane
from netwatch.ui.widgets.flows_table import FlowsTable
from netwatch.ui.widgets.status_bar import StatusBar
from tests.builders import make_alert, make_flow, make_process, make_snapshot
from tests.tui.helpers import NOW, FailingFeed, StepFeed, recording, replay, wait_for

pytestmark = pytest.mark.tui

SIZE = (120, 40)
VPNCLIENT = "tcp|192.168.1.13:51000|90.189.249.23:443"


def names(table: FlowsTable) -> list[str]:
    return [table.shown[k].cells[0] for k in table.order]


def cell(table: FlowsTable, key: str, column: str) -> str:
    return table.shown[key].cells[[c.key for c in FLOW_COLUMNS].index(column)]


async def test_rows_of_a_recording_appear_with_status_and_alerts() -> None:
    app = NetwatchApp(replay(), now=lambda: NOW, mode_label="replay")
    async with app.run_test(size=SIZE) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        table = app.query_one(FlowsTable)
        assert len(table.order) == 7
        assert "vpnclient 4242" in names(table)
        assert cell(table, VPNCLIENT, "proto") == "tls [VPNGATE]"
        assert cell(table, VPNCLIENT, "cc").startswith("RU")
        status = app.query_one(StatusBar).plain
        assert "REPLAY" in status and "capture off (needs CAP_NET_RAW)" in status
        assert "missing: packet capture" in status
        assert "GeoIP: bundled DB-IP lite 2026-11-01" in status
        alerts = app.query_one(AlertsPane).alerts
        assert [a.rule_id for a in alerts] == ["vpngate.relay_inbound", "vpngate.list_fetch"]
        assert alerts[1].count == 2


async def test_rows_update_in_place_and_the_cursor_and_scroll_survive() -> None:
    feed = StepFeed()
    snaps = recording()
    app = NetwatchApp(feed, now=lambda: NOW)
    async with app.run_test(size=SIZE) as pilot:
        table = app.query_one(FlowsTable)
        feed.push(snaps[1])
        await wait_for(pilot, lambda: len(table.order) == 7)
        row_objects = {k: table.rows[table._keys[k]] for k in table.order}
        index = table.order.index(VPNCLIENT)
        for _ in range(index):
            await pilot.press("down")
        assert table.cursor_key() == VPNCLIENT
        before = cell(table, VPNCLIENT, "down")
        feed.push(snaps[2])
        await wait_for(pilot, lambda: app.snapshot is not None and app.snapshot.seq == 3)
        await pilot.pause()
        assert table.cursor_key() == VPNCLIENT
        assert cell(table, VPNCLIENT, "down") != before
        kept = [k for k in table.order if k in row_objects]
        assert all(table.rows[table._keys[k]] is row_objects[k] for k in kept)
        assert "curl 3000" not in names(table)  # the flow that ended is gone
        feed.close()


async def test_scroll_position_survives_a_tick_with_many_flows() -> None:
    feed = StepFeed()
    proc = make_process("busy", pid=77)

    def many(seq: int) -> Snapshot:
        flows = tuple(
            make_flow(
                f"198.51.100.{i % 250}",
                1000 + i,
                local_port=20000 + i,
                process=proc,
                bytes_received=i * seq,
            )
            for i in range(300)
        )
        return make_snapshot(seq=seq, flows=flows)

    app = NetwatchApp(feed, now=lambda: NOW)
    async with app.run_test(size=SIZE) as pilot:
        table = app.query_one(FlowsTable)
        feed.push(many(1))
        await wait_for(pilot, lambda: len(table.order) == 300 and table.max_scroll_y > 200)
        table.scroll_to(y=120, animate=False)
        await wait_for(pilot, lambda: table.scroll_y == 120)
        feed.push(many(2))
        await wait_for(pilot, lambda: app.snapshot is not None and app.snapshot.seq == 2)
        await pilot.pause()
        assert table.scroll_y == 120
        feed.close()


async def test_sort_by_keys_and_by_clicking_a_header() -> None:
    app = NetwatchApp(replay(), now=lambda: NOW)
    async with app.run_test(size=SIZE) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        table = app.query_one(FlowsTable)
        assert app.state.sort == "down_rate" and app.state.reverse
        assert names(table)[0] == "firefox 2100"
        app.sort_by("proc")
        await pilot.pause()
        assert names(table) == sorted(names(table), key=lambda n: (n == "?", n))
        await pilot.press("r")
        assert app.state.reverse
        assert names(table)[0] == "vpnserver 5000"
        await pilot.press("s")
        assert app.state.sort == "remote"
        await pilot.press("S")
        assert app.state.sort == "proc"
        await pilot.click(FlowsTable, offset=(26, 0))  # the "Remote" header
        await pilot.pause()
        assert app.state.sort == "remote"
        await pilot.click(FlowsTable, offset=(26, 0))
        await pilot.pause()
        assert app.state.sort == "remote" and app.state.reverse


async def test_filter_with_the_query_language() -> None:
    app = NetwatchApp(replay(), now=lambda: NOW)
    async with app.run_test(size=SIZE) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        table = app.query_one(FlowsTable)
        await pilot.press("slash")
        await pilot.press(*"proc:vpn country:RU")
        await pilot.press("enter")
        assert names(table) == ["vpnclient 4242"]
        assert "filter: proc:vpn country:RU" in app.query_one(StatusBar).plain
        await pilot.press("slash", "ctrl+u", *"-proc:vpnserver -proc:vpnclient", "enter")
        assert "vpnserver 5000" not in names(table) and "vpnclient 4242" not in names(table)
        assert len(table.order) == 4
        await pilot.press("slash", "escape")
        assert len(table.order) == 7


async def test_pause_freezes_rendering_not_sampling() -> None:
    feed = StepFeed()
    snaps = recording()
    app = NetwatchApp(feed, now=lambda: NOW)
    async with app.run_test(size=SIZE) as pilot:
        table = app.query_one(FlowsTable)
        feed.push(snaps[0])
        await wait_for(pilot, lambda: len(table.order) == 6)
        await pilot.press("p")
        assert "PAUSED" in app.query_one(StatusBar).plain
        frozen = list(table.order)
        feed.push(snaps[3])
        await wait_for(pilot, lambda: app.snapshot is not None and app.snapshot.seq == 4)
        await pilot.pause()
        assert table.order == frozen
        assert len(app.alerts) == 1  # alerts keep arriving while paused
        await pilot.press("p")
        assert len(table.order) == 7 and table.order != frozen
        feed.close()


async def test_an_alert_appears_and_its_detail_opens() -> None:
    app = NetwatchApp(replay(), now=lambda: NOW)
    async with app.run_test(size=SIZE) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        await pilot.press("a", "enter")
        screen = app.screen
        assert isinstance(screen, TextScreen)
        text = screen.body.plain
        assert text.startswith("[HIGH] This PC serves as a VPN Gate relay")
        assert "inbound_peer: 203.0.113.9 (JP, AS2516)" in text
        assert "vpnserver (pid 5000)" in text
        assert "/usr/libexec/softether/vpnserver/vpnserver execsvc" in text
        assert "commonly cited" in text
        assert "RDAP owner    KDDI CORPORATION" in text
        assert "Turn relay mode off" in text
        await pilot.press("escape")
        assert not isinstance(app.screen, TextScreen)
        await pilot.press("down", "enter")
        text = app.screen.body.plain  # type: ignore[attr-defined]
        assert "VPN Gate relay list fetched" in text
        assert "pending (RDAP lookup running)" in text
        assert "parents       pid 1" in text


async def test_alerts_of_replaced_snapshots_are_not_lost() -> None:
    snaps = [
        make_snapshot(seq=i, alerts=(make_alert(alert_id=f"a{i}", first_seen=1_700_000_000.0 + i),))
        for i in range(1, 61)
    ]
    app = NetwatchApp(ReplayFeed(snaps), now=lambda: NOW)
    async with app.run_test(size=SIZE) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert len(app.alerts) == 60
        assert app.query_one(AlertsPane).alerts[0].id == "a60"


async def test_logged_alerts_sit_dimmed_below_those_that_want_attention() -> None:
    # The policy's `log` action: the alert is kept (and exported) but does not take the top.
    older = make_alert(alert_id="raised", rule_id="vpn.unexpected", first_seen=1_700_000_000.0)
    newer = replace(make_alert(alert_id="logged", first_seen=1_700_000_100.0), action=Action.LOG)
    app = NetwatchApp(ReplayFeed([make_snapshot(seq=1, alerts=(newer, older))]), now=lambda: NOW)
    async with app.run_test(size=SIZE) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        pane = app.query_one(AlertsPane)
        assert [a.id for a in pane.alerts] == ["raised", "logged"]
        title = pane.get_cell_at(Coordinate(1, 4))
        assert title.plain.endswith("(logged)") and title.style == "dim"
        assert not pane.get_cell_at(Coordinate(0, 4)).plain.endswith("(logged)")


async def test_alert_index_keeps_the_latest_state_of_each_alert() -> None:
    old = make_alert(alert_id="x", count=5)
    new = replace(old, count=6, last_seen=old.last_seen + 1)
    snaps = [make_snapshot(seq=1, alerts=(new,)), make_snapshot(seq=2, alerts=(old,))]
    app = NetwatchApp(ReplayFeed(snaps), now=lambda: NOW)
    async with app.run_test(size=SIZE) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.alerts["x"].count == 6


async def test_flow_detail_process_view_grouping_and_help() -> None:
    app = NetwatchApp(replay(), now=lambda: NOW)
    async with app.run_test(size=SIZE) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        table = app.query_one(FlowsTable)
        for _ in range(table.order.index(VPNCLIENT)):
            await pilot.press("down")
        await pilot.press("enter")
        text = app.screen.body.plain  # type: ignore[attr-defined]
        assert "192.168.1.13:51000 -> 90.189.249.23:443" in text
        assert "VPN Gate relay list fetched" in text  # alerts on this flow
        await pilot.press("escape", "o")
        assert isinstance(app.screen, ProcessScreen)
        assert app.screen.process_name == "vpnclient"
        await pilot.press("escape", "g")
        assert app.state.grouping is Grouping.PROCESS
        assert {table.shown[k].group for k in table.order} >= {"vpnserver", "firefox", "?"}
        await pilot.press("g", "g", "g")
        assert app.state.grouping is Grouping.NONE and len(table.order) == 7
        await pilot.press("question_mark")
        assert "Filter language" in app.screen.body.plain  # type: ignore[attr-defined]


async def test_a_failing_feed_is_reported_in_the_status_line() -> None:
    app = NetwatchApp(FailingFeed(recording()[0]), now=lambda: NOW)
    async with app.run_test(size=SIZE) as pilot:
        status = app.query_one(StatusBar)
        await wait_for(pilot, lambda: "feed failed" in status.plain)
        assert "daemon socket closed" in status.plain
        assert len(app.query_one(FlowsTable).order) == 6


async def test_quit_closes_the_feed() -> None:
    feed = StepFeed()
    app = NetwatchApp(feed, now=lambda: NOW)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("q")
    assert feed._queue.get_nowait() is None


async def test_snapshots_and_keys_while_a_detail_screen_is_open() -> None:
    feed = StepFeed()
    snaps = recording()
    app = NetwatchApp(feed, now=lambda: NOW)
    async with app.run_test(size=SIZE) as pilot:
        feed.push(snaps[2])
        await wait_for(pilot, lambda: len(app.alerts) == 1)
        await pilot.press("a", "enter")
        assert isinstance(app.screen, TextScreen)
        await pilot.press("x", "slash", "p")  # keys the detail screen does not use
        feed.push(snaps[3])
        await wait_for(pilot, lambda: len(app.alerts) == 2)
        assert isinstance(app.screen, TextScreen)
        await pilot.press("escape")
        assert len(app.table.order) == 7
        feed.close()


async def test_a_capture_file_analysis_reads_as_such() -> None:
    status = SourceStatus(mode="pcap", capture_reason="analyzing openvpn.pcap")
    flows = (make_flow(first_seen=1.0, last_seen=2.0),)
    snap = replace(make_snapshot(flows=flows), status=status, taken_at=4215 * 86400.0)
    app = NetwatchApp(ReplayFeed([snap]), mode_label="pcap")
    async with app.run_test(size=SIZE) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        text = app.status_bar.plain
        assert text.startswith(" PCAP   analyzing openvpn.pcap")
        assert "processes are unknown in a capture file" in text
        assert "end of recording" in text
        assert cell(app.table, app.table.order[0], "age") == "11y"


async def test_columns_scrolled_into_view_are_drawn() -> None:
    app = NetwatchApp(replay(), now=lambda: NOW)
    async with app.run_test(size=(80, 24)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert "Rostelecom" not in app.export_screenshot()  # ASN column is off to the right
        app.table.scroll_to(x=120, animate=False)
        await wait_for(pilot, lambda: app.table.scroll_x > 100)
        await pilot.pause()
        shot = app.export_screenshot()
        assert "Rostelecom" in shot and "KDDI" in shot


async def test_flows_sharing_a_key_are_shown_without_breaking_the_table() -> None:
    listener = make_flow(None, 0, local_ip="0.0.0.0", local_port=80, process=make_process("a"))
    twin = make_flow(None, 0, local_ip="0.0.0.0", local_port=80, process=make_process("b"))
    feed = StepFeed()
    app = NetwatchApp(feed, now=lambda: NOW)
    async with app.run_test(size=SIZE) as pilot:
        feed.push(make_snapshot(seq=1, flows=(listener, twin)))
        await wait_for(pilot, lambda: app.table.row_count == 2)
        await pilot.pause()
        assert sorted(names(app.table)) == ["a 4242", "b 4242"]
        feed.push(make_snapshot(seq=2, flows=(twin,)))
        await wait_for(pilot, lambda: app.table.row_count == 1)
        await pilot.pause()
        assert names(app.table) == ["b 4242"]
        feed.close()


async def test_a_storm_of_keys_on_a_live_like_feed_never_breaks_the_app() -> None:
    keys = [
        "s",
        "S",
        "r",
        "g",
        "p",
        "down",
        "pagedown",
        "up",
        "enter",
        "escape",
        "o",
        "a",
        "t",
        "c",
        "question_mark",
        "home",
        "end",
        "right",
        "left",
        "slash",
        "x",
        "enter",
    ]
    rng = random.Random(7)
    feed = StepFeed()
    snaps = recording()
    app = NetwatchApp(feed, now=lambda: NOW)
    async with app.run_test(size=(80, 24)) as pilot:
        for i in range(80):
            if i % 10 == 0:
                feed.push(replace(snaps[(i // 10) % 4], seq=i))
            await pilot.press(rng.choice(keys))
        for _ in range(4):
            await pilot.press("escape")
        await pilot.pause()
        assert app.snapshot is not None and app.snapshot.seq == 70
        assert app.is_running
        feed.close()


async def test_an_open_alert_shows_the_rdap_owner_when_it_arrives() -> None:
    feed = StepFeed()
    snaps = recording()
    app = NetwatchApp(feed, now=lambda: NOW)
    async with app.run_test(size=SIZE) as pilot:
        feed.push(snaps[1])
        await wait_for(pilot, lambda: len(app.alerts) == 1)
        await pilot.press("a", "enter")
        screen = app.screen
        assert isinstance(screen, TextScreen)
        assert "pending (RDAP lookup running)" in screen.body.plain
        resolved = Owner("ok", name="Rostelecom Novosibirsk", cidr="90.189.0.0/16")
        flows = tuple(
            replace(ef, remote=replace(ef.remote, owner=resolved))
            if ef.remote is not None and str(ef.remote.ip) == "90.189.249.23"
            else ef
            for ef in snaps[2].flows
        )
        feed.push(replace(snaps[2], flows=flows))
        await wait_for(pilot, lambda: "Rostelecom Novosibirsk" in screen.body.plain)
        assert "90.189.0.0/16" in screen.body.plain
        assert "seen          2x" in screen.body.plain  # the alert's newest count too
        feed.close()
