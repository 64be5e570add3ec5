"""Flow logs for a SIEM: when records are written, their period counts, and the file sink.

The reporter is pure (time and flows are given); the sink writes real files, rotated and
moded as the alert export is.
"""

from __future__ import annotations

import json
import stat
from dataclasses import replace
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from netwatch import codec
from netwatch.config import FLOW_EXPORT_FORMATS
from netwatch.export.flowlog import FlowReporter, Reason
from netwatch.export.jsonl import flow_report_to_dict
from netwatch.export.sinks import FLOW_FORMATS, FlowFileSink
from netwatch.model import Attribution, EnrichedFlow
from tests.builders import T0, make_flow, make_process


def _flow(port: int, sent: int, received: int, serial: int, rev: int, **kw: Any) -> EnrichedFlow:
    """A numbered flow (the engine's serial and traffic revision), as the engine hands it on."""
    ef = make_flow(local_port=port, bytes_sent=sent, bytes_received=received, **kw)
    return replace(ef, flow=replace(ef.flow, serial=serial, rev_traffic=rev, last_seen=T0 + rev))


def test_a_conversation_is_reported_once_when_it_ends() -> None:
    r = FlowReporter(active_timeout=0)
    assert r.observe((_flow(1, 10, 20, 1, 1),), T0 + 1) == []
    assert r.observe((_flow(1, 15, 90, 1, 2),), T0 + 2) == []
    (rep,) = r.observe((), T0 + 3)
    assert rep.reason is Reason.END and rep.final
    assert (rep.bytes_sent, rep.bytes_received) == (15, 90)
    assert (rep.start, rep.end) == (T0, T0 + 2)  # first packet .. last seen
    assert r.observe((), T0 + 4) == [] and len(r) == 0


def test_long_conversations_get_interim_records_with_the_period_increase() -> None:
    r = FlowReporter(active_timeout=60)
    got = []
    sent = 0
    for i in range(1, 200):  # one tick a second for 199 s, 100 bytes a second
        sent += 100
        got += r.observe((_flow(1, sent, 2 * sent, 1, i),), T0 + i)
    got += r.observe((), T0 + 200)
    reasons = [g.reason for g in got]
    assert reasons == [Reason.ACTIVE, Reason.ACTIVE, Reason.ACTIVE, Reason.END]
    assert [g.end for g in got[:3]] == [T0 + 61, T0 + 121, T0 + 181]
    assert [g.start for g in got] == [T0, T0 + 61, T0 + 121, T0 + 181]
    assert sum(g.bytes_sent or 0 for g in got) == sent  # the periods add up, nothing twice
    assert sum(g.bytes_received or 0 for g in got) == 2 * sent
    assert [g.bytes_sent for g in got] == [6100, 6000, 6000, 1800]


def test_unchanged_ticks_still_reach_the_active_timeout() -> None:
    r = FlowReporter(active_timeout=10)
    flows = (_flow(1, 5, 5, 1, 1), _flow(2, 7, 7, 2, 1))
    reports = [rep for t in range(1, 30) for rep in r.observe(flows, T0 + t)]
    assert [rep.flow.flow.key.local.port for rep in reports] == [1, 2, 1, 2]
    assert [rep.bytes_sent for rep in reports] == [5, 7, 0, 0]  # nothing moved since


def test_shutdown_reports_every_open_conversation_and_listeners_never() -> None:
    r = FlowReporter()
    listening = make_flow(remote_ip=None, local_port=22, state="LISTEN")
    r.observe((_flow(1, 1, 1, 1, 1), _flow(2, 2, 2, 2, 1), listening), T0 + 1)
    out = r.finish(T0 + 5)
    assert sorted(rep.flow.flow.key.local.port for rep in out) == [1, 2]
    assert {rep.reason for rep in out} == {Reason.SHUTDOWN}
    assert r.finish(T0 + 6) == []


def test_a_conversation_met_at_start_is_not_reported_at_once_for_its_past() -> None:
    r = FlowReporter(active_timeout=60)
    old = _flow(1, 1000, 1000, 1, 1, first_seen=T0 - 3600)
    assert r.observe((old,), T0 + 1) == []
    (rep,) = r.observe((old,), T0 + 61)
    assert rep.start == T0 - 3600 and rep.reason is Reason.ACTIVE


def test_counters_that_restart_are_reported_whole() -> None:
    r = FlowReporter(active_timeout=10)
    r.observe((_flow(1, 500, 500, 1, 1),), T0 + 1)
    r.observe((_flow(1, 600, 600, 1, 2),), T0 + 11)
    (rep,) = r.observe((_flow(1, 50, 60, 1, 3),), T0 + 21)
    assert (rep.bytes_sent, rep.bytes_received) == (50, 60)


def test_flow_file_sink_writes_jsonl_and_ecs_lines_with_a_private_mode(tmp_path: Path) -> None:
    assert FLOW_EXPORT_FORMATS == FLOW_FORMATS
    r = FlowReporter(active_timeout=0)
    r.observe((_flow(1, 10, 20, 1, 1),), T0 + 1)
    (rep,) = r.observe((), T0 + 2)
    for fmt in FLOW_FORMATS:
        path = tmp_path / "sub" / f"flows.{fmt}"
        sink = FlowFileSink(path, fmt)
        sink.emit(rep)
        sink.emit(rep)
        sink.close()
        assert stat.S_IMODE(path.stat().st_mode) in (0o600, 0o640)
        lines = path.read_text("utf-8").splitlines()
        assert len(lines) == 2
        doc = json.loads(lines[0])
        if fmt == "ecs":
            assert doc["event"]["kind"] == "event" and doc["event"]["reason"] == "end"
        else:
            assert doc["report"]["reason"] == "end" and doc["report"]["bytes_received"] == 20
            assert codec.flow_from_dict(doc).flow.bytes_received == 20  # still a flow record


def test_flow_file_sink_rotates(tmp_path: Path) -> None:
    r = FlowReporter(active_timeout=0)
    r.observe((_flow(1, 10, 20, 1, 1),), T0 + 1)
    (rep,) = r.observe((), T0 + 2)
    line = json.dumps(flow_report_to_dict(rep), separators=(",", ":"))
    path = tmp_path / "flows.jsonl"
    sink = FlowFileSink(path, "jsonl", max_bytes=len(line) * 3, backups=2)
    for _ in range(10):
        sink.emit(rep)
    sink.close()
    rotated = sorted(p.name for p in tmp_path.iterdir())
    assert rotated == ["flows.jsonl", "flows.jsonl.1", "flows.jsonl.2"]
    for p in tmp_path.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) in (0o600, 0o640)


def test_a_socket_that_outlives_its_owner_and_counters_keeps_what_was_known() -> None:
    r = FlowReporter(active_timeout=0)
    owned = _flow(1, 3000, 40, 1, 1, process=make_process("curl"))
    r.observe((owned,), T0 + 1)
    time_wait = replace(owned.flow, state="TIME_WAIT", process=None, bytes_sent=None,
                        bytes_received=None, rev_traffic=2)  # fmt: skip
    r.observe((replace(owned, flow=time_wait),), T0 + 2)
    (rep,) = r.observe((), T0 + 3)
    assert (rep.bytes_sent, rep.bytes_received) == (3000, 40)
    assert rep.flow.flow.process is not None and rep.flow.flow.process.name == "curl"
    assert rep.flow.flow.attribution is Attribution.CACHED
    assert rep.flow.flow.state == "TIME_WAIT"


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.dictionaries(st.integers(1, 6), st.integers(0, 3), max_size=6), max_size=12),
    st.booleans(),
)
def test_ended_conversations_and_their_bytes_match_a_plain_model(
    ticks: list[dict[int, int]], numbered: bool
) -> None:
    """Random ticks (port -> bytes added this tick): each conversation is reported ended
    exactly in the tick after its last one, and its records add up to what it moved, on
    the change-contract path (numbered flows) and the key path (unnumbered) alike."""
    r = FlowReporter(active_timeout=2.5)
    totals: dict[int, int] = {}
    serials: dict[int, int] = {}
    next_serial = 1
    reported: dict[int, int] = {}
    moved: dict[int, int] = {}
    for t, tick in enumerate([*ticks, {}], start=1):
        flows = []
        for port, added in sorted(tick.items()):
            if port not in totals:  # a new conversation: a new serial, as the engine gives
                serials[port], next_serial = next_serial, next_serial + 1
                totals[port] = 0
            totals[port] += added
            moved[port] = moved.get(port, 0) + added
            if numbered:
                f = _flow(port, totals[port], 0, serials[port], totals[port])
            else:  # built by hand: no serial and no revisions (`model.versions.UNNUMBERED`)
                f = _flow(port, totals[port], 0, 0, 0)
            flows.append(f)
        out = r.observe(tuple(flows), T0 + t)
        ended = {rep.flow.flow.key.local.port for rep in out if rep.reason is Reason.END}
        assert ended == set(totals) - set(tick)
        for rep in out:
            port = rep.flow.flow.key.local.port
            reported[port] = reported.get(port, 0) + (rep.bytes_sent or 0)
        for port in ended:
            del totals[port]
    assert len(r) == 0
    assert reported == moved
