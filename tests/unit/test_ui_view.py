"""Rows from snapshots: keys, cells, sorting, filtering, grouping, rates (no Textual)."""

from __future__ import annotations

from netwatch.model import Direction, Scope
from netwatch.ui import fmt, view
from netwatch.ui.query import parse
from netwatch.ui.stats import History, RateTracker, bytes_by_country, row_key
from tests.builders import make_flow, make_label, make_process, make_remote, make_snapshot

T0 = 1_700_000_000.0

CURL = make_process("curl", pid=10)
VPN = make_process("vpnclient", pid=20)


def flows(tick: int) -> tuple:
    return (
        make_flow(
            "90.189.249.23",
            443,
            local_port=1000,
            process=VPN,
            bytes_sent=100 * tick,
            bytes_received=1000 * tick,
            label=make_label("openvpn", "vpn", vpn=True),
            first_seen=T0,
        ),
        make_flow(
            "140.82.112.3",
            443,
            local_port=2000,
            process=CURL,
            bytes_sent=10 * tick,
            bytes_received=50_000 * tick,
            first_seen=T0 - 100,
            remote=make_remote("140.82.112.3", "US", 36459, "GITHUB", ("14 Eyes", "5 Eyes")),
        ),
        make_flow(
            None,
            0,
            local_ip="0.0.0.0",
            local_port=22,
            direction=Direction.LISTEN,
            process=make_process("sshd", pid=30),
            bytes_sent=None,
            bytes_received=None,
        ),
    )


def rows_for(state: view.ViewState, ticks: int = 2) -> list[view.Row]:
    tracker = RateTracker()
    snap = None
    for t in range(1, ticks + 1):
        snap = make_snapshot(seq=t, flows=flows(t))
        tracker.update(snap)
    assert snap is not None
    return view.build_rows(snap, state, tracker.rates, snap.taken_at)


def col(row: view.Row, key: str) -> str:
    return row.cells[[c.key for c in view.FLOW_COLUMNS].index(key)]


def test_rows_have_stable_keys_from_the_flow_key() -> None:
    a = rows_for(view.ViewState(), ticks=2)
    b = rows_for(view.ViewState(), ticks=3)
    assert {r.key for r in a} == {r.key for r in b}
    assert "tcp|192.168.1.13:1000|90.189.249.23:443" in {r.key for r in a}
    assert "tcp|0.0.0.0:22|*" in {r.key for r in a}


def test_cells_read_without_colour() -> None:
    rows = {r.flow.flow.process.name: r for r in rows_for(view.ViewState())}
    vpn = rows["vpnclient"]
    assert col(vpn, "proc") == "vpnclient 20"
    assert col(vpn, "cc").startswith("RU ")
    assert col(vpn, "proto") == "openvpn [VPN]"
    assert col(vpn, "conf") == "high"
    assert col(rows["curl"], "conf") == ""
    assert col(vpn, "asn") == "AS12389 PJSC Rostelecom"
    assert col(vpn, "down_rate") == "1.0K"
    assert col(vpn, "up") == "200B"
    assert col(vpn, "age") == "2s"
    assert col(rows["curl"], "eyes") == "5Eyes"
    assert col(rows["sshd"], "dir") == "lstn"
    assert col(rows["sshd"], "remote") == "*"


def test_default_sort_is_download_rate_descending_with_unknown_last() -> None:
    names = [r.flow.flow.process.name for r in rows_for(view.ViewState())]
    assert names == ["curl", "vpnclient", "sshd"]


def test_before_rates_are_known_the_busiest_flows_come_first() -> None:
    rows = rows_for(view.ViewState(), ticks=1)
    assert all(r.rate.down is None for r in rows)
    assert [r.flow.flow.process.name for r in rows] == ["curl", "vpnclient", "sshd"]


def test_sort_by_any_column_both_ways() -> None:
    asc = [r.flow.flow.process.name for r in rows_for(view.ViewState(sort="proc", reverse=False))]
    desc = [r.flow.flow.process.name for r in rows_for(view.ViewState(sort="proc", reverse=True))]
    assert asc == ["curl", "sshd", "vpnclient"]
    assert desc == ["vpnclient", "sshd", "curl"]
    for c in view.FLOW_COLUMNS:
        got = rows_for(view.ViewState(sort=c.key))
        assert len(got) == 3, c.key
    by_age = [r.flow.flow.process.name for r in rows_for(view.ViewState(sort="age"))]
    assert by_age[0] == "curl"


def test_filter_and_negation() -> None:
    state = view.ViewState(query=parse("vpn:true"))
    assert [r.flow.flow.process.name for r in rows_for(state)] == ["vpnclient"]
    state = view.ViewState(query=parse("-proc:curl -dir:listen"))
    assert [r.flow.flow.process.name for r in rows_for(state)] == ["vpnclient"]


def test_grouping_by_process_country_and_asn() -> None:
    by_proc = rows_for(view.ViewState(grouping=view.Grouping.PROCESS))
    assert {r.group for r in by_proc} == {"curl", "vpnclient", "sshd"}
    vpn = next(r for r in by_proc if r.group == "vpnclient")
    assert vpn.cells[1] == "1" and vpn.vpn and vpn.cells[6] == "1"
    by_cc = rows_for(view.ViewState(grouping=view.Grouping.COUNTRY))
    assert {r.group.split()[0] for r in by_cc} == {"RU", "US", "--"}
    by_asn = rows_for(view.ViewState(grouping=view.Grouping.ASN))
    assert "AS36459 GITHUB" in {r.group for r in by_asn}
    assert view.Grouping.NONE.next() is view.Grouping.PROCESS
    assert view.Grouping.ASN.next() is view.Grouping.NONE


def test_rates_need_two_snapshots_and_clamp_counter_resets() -> None:
    tracker = RateTracker()
    first = tracker.update(make_snapshot(seq=1, flows=flows(1)))
    assert all(r.up is None for r in first)
    second = tracker.update(make_snapshot(seq=3, flows=flows(3)))  # two seconds later
    assert second[0].down == 1000.0 and second[0].up == 100.0
    key = row_key(flows(1)[0].flow.key)
    assert tracker.rates[key] is second[0] and tracker.keys[0] == key
    reset = tracker.update(make_snapshot(seq=4, flows=flows(1)))
    assert reset[0].down == 0.0


def test_history_totals_and_per_process_series() -> None:
    tracker, hist = RateTracker(), History(window=3)
    for t in range(1, 6):
        snap = make_snapshot(seq=t, flows=flows(t))
        hist.add(snap, tracker.update(snap))
    assert len(hist.total) == 3
    assert hist.series("curl") == [50_010.0] * 3
    assert hist.series() == [51_110.0] * 3
    assert "sshd" not in hist.by_process


def test_bytes_by_country_largest_first_and_local_scopes_named() -> None:
    lan = make_flow(
        "192.168.1.1",
        53,
        bytes_sent=1,
        bytes_received=1,
        remote=make_remote("192.168.1.1", None, None, None, scope=Scope.PRIVATE),
    )
    totals = bytes_by_country([*flows(1), lan])
    assert totals == [("US", 50_010), ("RU", 1_100), ("lan", 2)]


def test_formatting_helpers() -> None:
    assert fmt.size(None) == "-" and fmt.size(512) == "512B" and fmt.size(4200) == "4.2K"
    assert fmt.size(50 * 1000 * 1000) == "50M"
    assert fmt.rate(None) == "" and fmt.rate(0.1) == "0"
    assert fmt.duration(59) == "59s" and fmt.duration(3600) == "1h" and fmt.duration(None) == "-"
    assert fmt.duration(999 * 86400) == "999d" and fmt.duration(4215 * 86400) == "11y"
    assert fmt.flag("RU") == "\U0001f1f7\U0001f1fa" and fmt.flag("R1") == ""
    long = make_process("systemd-resolved", pid=123456)
    assert fmt.process(long, 16) == "systemd-~ 123456"
    assert len(fmt.process(long, 16)) <= 16
    assert fmt.spark([0, 5, 10], 3) == " ▄█"
    assert fmt.spark([0, 0], 2) == "  "
    assert fmt.spark([1, 2, 3, 4], 2) == "▄█"
    assert fmt.buckets([1, 5, 2, 2, 9, 0], 3) == [5, 2, 9]
    assert len(fmt.buckets(list(range(300)), 38)) == 38


def test_flows_sharing_a_key_get_distinct_row_keys() -> None:
    a = make_flow(
        None,
        0,
        local_ip="0.0.0.0",
        local_port=80,
        direction=Direction.LISTEN,
        process=make_process("nginx", pid=1),
    )
    b = make_flow(
        None,
        0,
        local_ip="0.0.0.0",
        local_port=80,
        direction=Direction.LISTEN,
        process=make_process("nginx", pid=2),
    )
    rows = view.build_rows(make_snapshot(flows=(a, b, a)), view.ViewState(), {}, T0)
    assert sorted(r.key for r in rows) == [
        "tcp|0.0.0.0:80|*",
        "tcp|0.0.0.0:80|*#2",
        "tcp|0.0.0.0:80|*#3",
    ]


def test_status_line_counts_connection_starts_it_could_not_name() -> None:
    from dataclasses import replace

    from netwatch.model import Counters
    from netwatch.ui.view import ViewState
    from netwatch.ui.widgets.status_bar import status_text
    from tests.builders import make_snapshot

    quiet = make_snapshot()
    assert "unnamed" not in status_text(quiet, ViewState(), 0, None).plain
    missed = replace(quiet, counters=Counters(starts_named=40, starts_missed=3))
    assert "unnamed starts 3" in status_text(missed, ViewState(), 0, None).plain


def test_status_line_says_why_starts_went_unnamed_what_names_them_and_the_share() -> None:
    from dataclasses import replace

    from netwatch.model import Counters, NamedShare, SourceStatus
    from netwatch.ui.view import ViewState
    from netwatch.ui.widgets.status_bar import status_text
    from tests.builders import make_snapshot

    snap = replace(
        make_snapshot(),
        status=SourceStatus(mode="daemon", privileged=True, capture=True,
                            starts="exec events + connection starts"),
        counters=Counters(starts_missed=6, starts_missed_budget=4, starts_missed_gone=2,
                          share=NamedShare(bytes_known=90, bytes_guessed=5, bytes_unknown=5)),
    )  # fmt: skip
    text = status_text(snap, ViewState(), 0, None).plain
    assert "unnamed starts 6 (budget 4, gone 2, queue 0)" in text
    assert "short connections: exec events + connection starts" in text
    assert "last min bytes: 90% named, 5% guessed, 5% unknown" in text
