"""The delta protocol (netwatch.stream) and the codec's framing: round trips, what a delta
holds, what the decoder reuses, damage, old recordings, and the sizes issue 12 asks for."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netwatch import codec, stream
from netwatch.model import EnrichedFlow, ProcessRef, Snapshot, SourceStatus
from netwatch.stream import OutOfStepError, StreamDecoder, StreamEncoder
from tests.builders import T0, make_alert, make_flow, make_process, make_remote, make_snapshot


def numbered(ef: EnrichedFlow, serial: int, facts: int = 1, traffic: int = 1) -> EnrichedFlow:
    return replace(ef, flow=replace(ef.flow, serial=serial, rev_facts=facts, rev_traffic=traffic))


def busier(ef: EnrichedFlow, by: int = 100) -> EnrichedFlow:
    """The same conversation, more bytes: only `rev_traffic` moves."""
    f = ef.flow
    return replace(
        ef,
        flow=replace(
            f,
            bytes_sent=(f.bytes_sent or 0) + by,
            last_seen=(f.last_seen or T0) + 1,
            rev_traffic=f.rev_traffic + 1,
        ),
    )


def renamed(ef: EnrichedFlow, sni: str) -> EnrichedFlow:
    """A fact moved: `rev_facts` moves."""
    return replace(ef, flow=replace(ef.flow, sni=sni, rev_facts=ef.flow.rev_facts + 1))


PROCS = [make_process(f"app{i}", pid=1000 + i) for i in range(4)]


def base_flows(n: int = 6) -> tuple[EnrichedFlow, ...]:
    return tuple(
        numbered(make_flow(local_port=40000 + i, process=PROCS[i % 3]), serial=i + 1)
        for i in range(n)
    )


def wire(record: codec.JSONDict) -> codec.JSONDict:
    """What a reader gets: the record through its frame and back."""
    got = codec.FrameReader().feed(codec.frame(record))
    assert len(got) == 1
    return got[0]


def play(snaps: list[Snapshot]) -> tuple[list[Snapshot], list[codec.JSONDict]]:
    enc, dec = StreamEncoder(), StreamDecoder()
    records = [wire(enc.encode(s)) for s in snaps]
    return [dec.decode(r) for r in records], records


def test_a_stream_round_trips_every_tick_with_serials_and_revisions() -> None:
    flows = base_flows()
    t2 = (busier(flows[0]), *flows[1:4], renamed(flows[5], "example.org"))  # 4 (serial 5) gone
    new = numbered(make_flow(local_port=41000, process=PROCS[3]), serial=99)
    t3 = (*t2, new)
    snaps = [
        make_snapshot(1, flows=flows, alerts=(make_alert(),)),
        make_snapshot(2, flows=t2),
        make_snapshot(3, flows=t3, alerts=(make_alert(alert_id="b"),)),
        make_snapshot(4, flows=t3),
    ]
    got, records = play(snaps)
    assert got == snaps
    for mine, theirs in zip(got, snaps, strict=True):
        assert [f.version for f in mine.flows] == [f.version for f in theirs.flows]
    assert [r["type"] for r in records] == ["state", "delta", "delta", "delta"]
    assert all(r["schema"] == stream.STREAM_SCHEMA == 2 for r in records)
    two = records[1]
    assert two["prev"] == 1 and two["removals"] == [5]
    assert [u["serial"] for u in two["upserts"]] == [1, 6]
    assert set(two["upserts"][0]) == {"serial", "rev", "traffic"}  # traffic only
    assert two["upserts"][0]["traffic"]["bytes_sent"] == flows[0].flow.bytes_sent + 100
    assert set(two["upserts"][1]) == {"serial", "rev", "flow", "remote"}  # a fact moved
    assert "processes" not in two and "status" not in two  # nothing new, status unchanged
    three = records[2]
    assert [p["name"] for p in three["processes"]] == ["app3"]  # sent once, when first used
    assert three["upserts"][0]["flow"]["proc"] == three["processes"][0]["id"]
    assert records[3]["upserts"] == [] and records[3]["removals"] == []


def test_unchanged_flows_are_the_decoders_previous_objects() -> None:
    flows = base_flows()
    got, _ = play(
        [
            make_snapshot(1, flows=flows),
            make_snapshot(2, flows=flows),
            make_snapshot(3, flows=(busier(flows[0]), *flows[1:])),
        ]
    )
    assert got[1].flows is got[0].flows  # a quiet tick: the very tuple
    assert got[2].flows[0] is not got[0].flows[0]
    assert all(a is b for a, b in zip(got[2].flows[1:], got[0].flows[1:], strict=True))


def test_the_process_table_is_sent_once_and_processes_no_flow_uses_are_gone() -> None:
    only = numbered(make_flow(local_port=1, process=PROCS[0]), serial=1)
    other = numbered(make_flow(local_port=2, process=PROCS[1]), serial=2)
    also = numbered(make_flow(local_port=3, process=PROCS[0]), serial=3)
    snaps = [
        make_snapshot(1, flows=(only, other)),
        make_snapshot(2, flows=(only, other, also)),  # app0 again: not sent again
        make_snapshot(3, flows=(other,)),  # app0 used by no flow: gone
        make_snapshot(4, flows=(other, also)),  # app0 back: sent again, under a new id
    ]
    got, records = play(snaps)
    assert got == snaps
    assert [p["name"] for p in records[0]["processes"]] == ["app0", "app1"]
    assert "processes" not in records[1]
    first_id = records[0]["processes"][0]["id"]
    assert records[2]["gone"] == [first_id]
    assert [p["name"] for p in records[3]["processes"]] == ["app0"]
    assert records[3]["processes"][0]["id"] != first_id


def test_a_reader_that_starts_late_gets_a_state_and_then_the_same_deltas() -> None:
    flows = base_flows()
    enc = StreamEncoder()
    early = StreamDecoder()
    early.decode(wire(enc.encode(make_snapshot(1, flows=flows))))
    delta2 = wire(enc.delta(make_snapshot(2, flows=(busier(flows[0]), *flows[1:]))))
    early.decode(delta2)
    late = StreamDecoder()
    greeting = (make_alert(alert_id="recent"),)
    assert late.decode(wire(enc.state(greeting))).alerts == greeting
    last = make_snapshot(3, flows=(*flows[:2], renamed(flows[2], "x.example")))
    delta3 = wire(enc.delta(last))
    assert early.decode(delta3) == late.decode(delta3) == last


def test_status_is_sent_only_when_it_changed() -> None:
    quiet = SourceStatus(mode="daemon", capture=True)
    snaps = [
        make_snapshot(1, status=quiet),
        make_snapshot(2, status=quiet),
        make_snapshot(3, status=replace(quiet, missing=("capture: lost",))),
    ]
    got, records = play(snaps)
    assert got == snaps
    assert "status" not in records[1] and records[2]["status"]["missing"] == ["capture: lost"]


def test_flows_without_serials_still_round_trip_and_changes_are_found_by_value() -> None:
    a, b, c = (make_flow(local_port=p) for p in (1, 2, 3))
    twin = make_flow(local_port=1)  # same key twice in one snapshot
    snaps = [
        make_snapshot(1, flows=(a, b)),
        make_snapshot(2, flows=(a, replace(b, flow=replace(b.flow, bytes_sent=77)))),
        make_snapshot(3, flows=(c, a, twin)),
        make_snapshot(4, flows=(c, a, twin)),
    ]
    got, records = play(snaps)
    assert got == snaps
    assert all(f.flow.serial == 0 for s in got for f in s.flows)
    assert len(records[1]["upserts"]) == 1 and "flow" in records[1]["upserts"][0]
    assert records[3]["upserts"] == []
    assert got[3].flows[1] is got[2].flows[1]


def test_a_new_order_is_sent_when_it_is_not_the_old_one() -> None:
    flows = base_flows(4)
    snaps = [
        make_snapshot(1, flows=flows),
        make_snapshot(2, flows=flows[::-1]),
        make_snapshot(3, flows=(*flows[::-1][1:], numbered(make_flow(local_port=9), 50))),
    ]
    got, records = play(snaps)
    assert got == snaps
    assert records[1]["order"] == [4, 3, 2, 1] and records[1]["upserts"] == []
    assert "order" not in records[2]  # the old order, less the removed, then the new


def test_a_state_after_deltas_keeps_the_objects_whose_revisions_it_holds() -> None:
    flows = base_flows()
    enc, dec = StreamEncoder(stream="daemon-1"), StreamDecoder()
    first = dec.decode(wire(enc.encode(make_snapshot(1, flows=flows))))
    enc.delta(make_snapshot(2, flows=(busier(flows[0]), *flows[1:])))
    again = dec.decode(wire(enc.state()))  # a resync: the reader missed tick 2
    assert again.flows[0] == busier(flows[0]) and again.flows[0] is not first.flows[0]
    assert all(a is b for a, b in zip(again.flows[1:], first.flows[1:], strict=True))


def test_a_state_of_another_stream_reuses_nothing_though_serials_and_revisions_match() -> None:
    dec = StreamDecoder()
    old = dec.decode(
        wire(StreamEncoder(stream="before").encode(make_snapshot(1, flows=base_flows())))
    )
    # The daemon restarted: its new engine numbers other conversations from 1 again.
    other = tuple(
        numbered(make_flow(local_port=50000 + i, remote_ip="203.0.113.5"), serial=i + 1)
        for i in range(6)
    )
    assert [f.version for f in other] == [f.version for f in old.flows]
    dec.restart()
    got = dec.decode(wire(StreamEncoder(stream="after").encode(make_snapshot(1, flows=other))))
    assert got.flows == other


def test_a_delta_that_does_not_follow_is_out_of_step_until_the_next_state() -> None:
    flows = base_flows(2)
    enc = StreamEncoder()
    state = wire(enc.encode(make_snapshot(1, flows=flows)))
    d2 = wire(enc.delta(make_snapshot(2, flows=(busier(flows[0]), flows[1]))))
    d3 = wire(enc.delta(make_snapshot(3, flows=flows[1:])))
    dec = StreamDecoder()
    with pytest.raises(OutOfStepError):
        dec.apply(d2)  # no state yet
    dec.apply(state)
    with pytest.raises(OutOfStepError):
        dec.apply(d3)  # d2 was lost
    assert not dec.synced
    with pytest.raises(OutOfStepError):
        dec.apply(d2)  # still out of step: only a state sets it right
    dec.apply(wire(enc.state()))
    assert dec.synced and dec.snapshot().flows == flows[1:]


def test_a_malformed_delta_changes_nothing_and_leaves_the_reader_out_of_step() -> None:
    flows = base_flows(3)
    enc, dec = StreamEncoder(), StreamDecoder()
    before = dec.decode(wire(enc.encode(make_snapshot(1, flows=flows))))
    bad = wire(enc.delta(make_snapshot(2, flows=(busier(flows[0]), flows[2]))))
    bad["upserts"][0]["traffic"]["bytes_sent"] = "many"
    with pytest.raises(codec.CodecError):
        dec.apply(bad)
    assert dec.snapshot() == before and not dec.synced


@pytest.mark.parametrize(
    "damage",
    [
        {"type": "weather"},
        {"schema": 99},
        {"seq": "one"},
        {"flows": [{"serial": 1, "rev": [1, 1]}]},
        {"flows": [{"serial": 1, "rev": [1, 1, 1]}]},
        {"flows": [{"serial": 1, "rev": [1, 1, 1], "flow": {"proc": 12345}}]},
        {"processes": [{"id": "x"}]},
    ],
)
def test_damaged_states_raise_codec_errors(damage: dict[str, object]) -> None:
    enc = StreamEncoder()
    record = {**wire(enc.encode(make_snapshot(1, flows=base_flows(2)))), **damage}
    with pytest.raises(codec.CodecError):
        StreamDecoder().apply(record)


def test_an_old_schema_1_recording_line_decodes_to_its_snapshot() -> None:
    snap = make_snapshot(3, flows=base_flows(2), alerts=(make_alert(),))
    old = json.loads(codec.dumps(snap))
    assert old["schema"] == 1 and old["type"] == "snapshot"
    dec = StreamDecoder()
    assert dec.decode(old) == snap
    assert not dec.synced


# ---------------------------------------------------------------- random ticks


@st.composite
def ticks(draw: st.DrawFn) -> list[Snapshot]:
    """Random streams: flows come, go, move bytes, change facts and remotes, reorder."""
    serial = 0
    flows: list[EnrichedFlow] = []
    out: list[Snapshot] = []
    for seq in range(draw(st.integers(1, 6))):
        for i in range(len(flows)):
            change = draw(st.sampled_from(["same", "traffic", "facts", "remote", "proc"]))
            if change == "traffic":
                flows[i] = busier(flows[i])
            elif change == "facts":
                flows[i] = renamed(flows[i], f"s{seq}.example")
            elif change == "remote":
                flows[i] = replace(flows[i], remote=make_remote("203.0.113.7"), rev_remote=seq + 1)
            elif change == "proc":
                f = flows[i].flow
                p = draw(st.sampled_from([*PROCS, None]))
                flows[i] = replace(flows[i], flow=replace(f, process=p, rev_facts=f.rev_facts + 1))
        keep = draw(st.lists(st.booleans(), min_size=len(flows), max_size=len(flows)))
        flows = [f for f, k in zip(flows, keep, strict=True) if k]
        for _ in range(draw(st.integers(0, 4))):
            serial += 1
            if draw(st.booleans()):
                ef = numbered(make_flow(local_port=serial, process=PROCS[serial % 4]), serial)
            else:
                ef = make_flow(local_port=draw(st.integers(1, 5)))  # unnumbered
            flows.append(ef)
        if draw(st.booleans()):
            flows = draw(st.permutations(flows))
        alerts = (make_alert(alert_id=f"a{seq}"),) if draw(st.booleans()) else ()
        out.append(make_snapshot(seq, flows=tuple(flows), alerts=alerts))
    return out


@settings(max_examples=150, deadline=None)
@given(ticks(), st.integers(0, 5))
def test_random_streams_round_trip_for_early_and_late_readers(
    snaps: list[Snapshot], join: int
) -> None:
    enc, early, late = StreamEncoder(), StreamDecoder(), StreamDecoder()
    for i, snap in enumerate(snaps):
        record = wire(enc.encode(snap))
        assert early.decode(record) == snap
        if i == join:
            late.decode(wire(enc.state(snap.alerts)))
        elif i > join:
            assert late.decode(record) == snap
    if join < len(snaps):
        assert late.snapshot() == snaps[-1]


# ---------------------------------------------------------------- framing


def test_the_frame_reader_takes_records_in_any_chunks_and_counts_damage() -> None:
    records = [{"a": 1}, {"b": "line\nbreak inside"}, {"c": [1, 2]}]
    data = b"".join(codec.frame(r) for r in records)
    data = data[:5] + b"\n  \nnot json\n[1]\n" + data[5:]  # damage inside the first line
    reader = codec.FrameReader()
    got = []
    for i in range(0, len(data), 3):
        got.extend(reader.feed(data[i : i + 3]))
    assert got == records[1:]
    assert reader.bad == 4  # the first line cut in two, "not json", a list


def test_the_frame_reader_passes_over_a_line_longer_than_its_bound() -> None:
    reader = codec.FrameReader(max_frame=100)
    got = reader.feed(b'{"x":"' + b"y" * 150)
    got += reader.feed(b"y" * 500 + b'"}\n' + codec.frame({"ok": True}))
    assert got == [{"ok": True}]
    assert reader.bad == 1 and reader.pending == 0


# ---------------------------------------------------------------- sizes (issue 12)

N = 10_000


def _population() -> tuple[EnrichedFlow, ...]:
    """10,000 numbered flows of 200 processes to 500 remotes, like a busy server."""
    procs = [
        ProcessRef(
            pid=3000 + i,
            create_time=T0,
            name=f"worker{i}",
            exe=f"/usr/bin/worker{i}",
            cmdline=(f"/usr/bin/worker{i}", "--serve", "--threads=8"),
            user="www-data",
            ppid=1,
        )
        for i in range(200)
    ]
    remotes = [
        make_remote(f"198.51.{i // 250}.{i % 250 + 1}", "DE", 64500 + i, f"AS{i}")
        for i in range(500)
    ]
    return tuple(
        numbered(
            make_flow(
                remote_ip=str(remotes[i % 500].ip),
                remote=remotes[i % 500],
                local_port=10000 + i % 50000,
                remote_port=443,
                process=procs[i % 200],
                sni=f"host{i % 500}.example",
            ),
            serial=i + 1,
        )
        for i in range(N)
    )


def test_a_quiet_tick_at_10000_flows_is_under_1_kb_and_100_changes_under_100_kb() -> None:
    flows = _population()
    enc = StreamEncoder()
    state = codec.frame(enc.encode(make_snapshot(1, flows=flows)))
    quiet = codec.frame(enc.delta(make_snapshot(2, flows=flows)))
    moved = list(flows)
    for i in range(0, N, N // 100):
        moved[i] = busier(moved[i]) if i % 200 else renamed(moved[i], "changed.example")
    busy = codec.frame(enc.delta(make_snapshot(3, flows=tuple(moved))))
    assert enc.upserts == 100
    assert len(quiet) < 1024, len(quiet)
    assert len(busy) < 100 * 1024, len(busy)
    old_quiet = len(codec.dumps(make_snapshot(2, flows=flows)))  # schema 1: every flow
    assert len(state) < old_quiet  # the process table is sent once, not per flow
