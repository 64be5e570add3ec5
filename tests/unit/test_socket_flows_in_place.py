"""The flow stage's in-place path (`SocketFlows._in_place`) gives what the whole-table path
gives: a table re-read in place (`SocketTable.reread`) and the same entries in a table made
afresh yield equal flows, the same reuse of last tick's flows and the same revisions moved."""

from __future__ import annotations

import ipaddress
import itertools
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from netwatch.flows.serials import SerialBook
from netwatch.flows.socket_flows import SocketFlows
from netwatch.model import (
    Direction,
    Endpoint,
    Flow,
    FlowKey,
    ProcessRef,
    SocketEntry,
    SocketTable,
    Transport,
)

LO = ipaddress.ip_address("127.0.0.1")
LISTEN_PORT = 5000
_STAMPS = itertools.count(1)
_INODES = itertools.count(100)
PROCS = (
    ProcessRef(pid=10, name="server", create_time=1.0),
    ProcessRef(pid=11, name="client", create_time=2.0),
)


def _entry(local: int, remote: int | None, state: str = "ESTABLISHED") -> SocketEntry:
    key = FlowKey(
        Transport.TCP, Endpoint(LO, local), None if remote is None else Endpoint(LO, remote)
    )
    return SocketEntry(
        key=key, state="LISTEN" if remote is None else state, direction=Direction.UNKNOWN,
        process=PROCS[local != LISTEN_PORT], inode=next(_INODES), uid=0,
        bytes_sent=0, bytes_received=0, segs_out=0, segs_in=0, stamp=next(_STAMPS),
    )  # fmt: skip


def _again(e: SocketEntry, sent: int, state: str | None) -> SocketEntry:
    """The same socket read again: new counters (and maybe state), a new stamp."""
    return replace(
        e, bytes_sent=(e.bytes_sent or 0) + sent, segs_out=(e.segs_out or 0) + 1,
        state=state or e.state, stamp=next(_STAMPS),
    )  # fmt: skip


def _initial(n: int) -> list[SocketEntry]:
    out = [_entry(LISTEN_PORT, None)]
    for i in range(n):  # both ends of each loopback connection
        out += [_entry(40000 + i, LISTEN_PORT), _entry(LISTEN_PORT, 40000 + i)]
    return out


_STEP = st.one_of(
    st.tuples(
        st.just("reread"),
        st.lists(st.integers(0, 40), max_size=6),
        st.integers(1, 500),
        st.sampled_from([None, None, "CLOSE_WAIT", "SYN_RECV"]),
    ),
    st.tuples(st.just("add"), st.integers(0, 2)),
    st.tuples(st.just("close"), st.integers(0, 40)),
    st.tuples(st.just("unlisten"), st.just(0)),
    st.just(("quiet",)),
)


def _revs(flow: Flow, before: dict[int, Flow]) -> tuple[bool, bool, bool]:
    """(new serial, rev_facts moved, rev_traffic moved) against last tick's flows."""
    prev = before.get(flow.serial)
    if prev is None:
        return True, True, True
    return False, prev.rev_facts != flow.rev_facts, prev.rev_traffic != flow.rev_traffic


@settings(max_examples=150, deadline=None)
@given(n=st.integers(1, 6), steps=st.lists(_STEP, max_size=12))
def test_in_place_matches_the_whole_table_path(n: int, steps: list[tuple[object, ...]]) -> None:
    entries = _initial(n)
    ours, theirs = SocketFlows(SerialBook()), SocketFlows(SerialBook())
    table = SocketTable(taken_at=0.0, entries=tuple(entries))
    last = (ours.flows(table, 0.0), theirs.flows(SocketTable(0.0, tuple(entries)), 0.0))
    fresh_ports = itertools.count(41000)
    for t, step in enumerate(steps, start=1):
        now = float(t)
        kind = step[0]
        if kind == "reread":
            _, picks, sent, state = step
            new = list(entries)
            for p in picks if new else ():
                i = p % len(new)
                if new[i].key.remote is not None:
                    new[i] = _again(entries[i], int(sent), state)  # type: ignore[arg-type]
            entries = new
            table = table.reread(now, tuple(entries))
        elif kind == "quiet":
            pass  # the very same table again
        else:
            if kind == "add":
                for _ in range(int(step[1])):
                    port = next(fresh_ports)
                    entries += [_entry(port, LISTEN_PORT), _entry(LISTEN_PORT, port)]
            elif kind == "close" and len(entries) > 1:
                del entries[1 + int(step[1]) % (len(entries) - 1)]
            elif kind == "unlisten" and entries and entries[0].key.remote is None:
                entries = entries[1:]  # accepted sockets now look outbound
            table = SocketTable(taken_at=now, entries=tuple(entries))
        afresh = SocketTable(taken_at=now, entries=tuple(entries))
        got, want = ours.flows(table, now), theirs.flows(afresh, now)
        assert got == want  # values, first_seen and direction included
        assert ours.reused == theirs.reused
        before = ({f.serial: f for f in last[0]}, {f.serial: f for f in last[1]})
        assert [_revs(f, before[0]) for f in got] == [_revs(f, before[1]) for f in want]
        if len(got) == len(last[0]):
            assert [a is b for a, b in zip(got, last[0], strict=True)] == [
                a is b for a, b in zip(want, last[1], strict=True)
            ]
        last = (got, want)


def test_a_table_re_read_in_place_rebuilds_only_the_moved_positions() -> None:
    entries = _initial(50)
    flows = SocketFlows(SerialBook())
    table = SocketTable(taken_at=0.0, entries=tuple(entries))
    first = flows.flows(table, 0.0)
    entries[3] = _again(entries[3], 100, None)
    again = table.reread(1.0, tuple(entries))
    assert again.reread_of is table.entries
    second = flows.flows(again, 1.0)
    assert flows.reused == len(entries) - 1
    assert [i for i, (a, b) in enumerate(zip(first, second, strict=True)) if a is not b] == [3]
    assert second[3].bytes_sent == 100 and second[3].serial == first[3].serial
    assert second[3].rev_facts == first[3].rev_facts != 0
    assert second[3].rev_traffic != first[3].rev_traffic
