"""The enrich stage's in-place path (`SocketFlows._enriched_in_place`) gives what its
whole-tick path gives: equal enriched flows, the same reuse of last tick's objects and the
same `rev_remote` moves, over ticks that move, reorder, add, drop and copy flows."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from netwatch.flows.serials import SerialBook, numbered
from netwatch.flows.socket_flows import SocketFlows
from netwatch.model import EnrichedFlow, Flow, RemoteInfo
from tests.builders import make_flow, make_remote

REMOTES = (make_remote("192.0.2.1", "DE"), make_remote("198.51.100.2", "FR"))


class WholeTick(SocketFlows):
    """The stage with its in-place path turned off: the reference it must agree with."""

    def _enriched_in_place(self, *_: object) -> None:
        return None


def _enricher(answers: list[RemoteInfo], asked: list[Flow]) -> object:
    """A stable enricher: the answer depends on the flow's remote port only."""

    def enrich(f: Flow) -> EnrichedFlow:
        assert f.key.remote is not None
        asked.append(f)
        return EnrichedFlow(f, answers[f.key.remote.port % len(answers)])

    return enrich


_STEP = st.one_of(
    st.tuples(st.just("move"), st.lists(st.integers(0, 30), max_size=5)),
    st.tuples(st.just("copy"), st.integers(0, 30)),  # a new object, the same version
    st.tuples(st.just("swap"), st.integers(0, 30)),
    st.tuples(st.just("swap and move"), st.integers(0, 30)),
    st.tuples(st.just("add"), st.integers(1, 2)),
    st.tuples(st.just("drop"), st.integers(0, 30)),
    st.tuples(st.just("unnumbered"), st.integers(0, 30)),
    st.just(("quiet",)),
)


def _pattern(out: Sequence[EnrichedFlow], last: Sequence[EnrichedFlow]) -> list[object]:
    """Per flow: whether it is last tick's object at its place, and whether its
    `rev_remote` is that of last tick's flow of its serial (None: a new serial)."""
    by_serial = {e.flow.serial: e for e in last if e.flow.serial}
    same = [a is b for a, b in zip(out, last, strict=False)] if len(out) == len(last) else []
    kept = [
        None if (was := by_serial.get(e.flow.serial)) is None else was.rev_remote == e.rev_remote
        for e in out
    ]
    return [same, kept]


@settings(max_examples=150, deadline=None)
@given(n=st.integers(1, 8), steps=st.lists(_STEP, max_size=12), by_port=st.booleans())
def test_in_place_matches_the_whole_tick_path(
    n: int, steps: list[tuple[object, ...]], by_port: bool
) -> None:
    book = SerialBook()
    ports = itertools.count(1000)

    def fresh() -> Flow:
        port = next(ports)
        f = make_flow(remote_ip="192.0.2.1", remote_port=port, local_port=port).flow
        return numbered(f, book.serial(f.key), None)

    flows = [fresh() for _ in range(n)]
    answers = list(REMOTES)
    asked: tuple[list[Flow], list[Flow]] = ([], [])
    mine = _enricher(answers, asked[0]) if by_port else None
    reference = _enricher(answers, asked[1]) if by_port else None
    ours, theirs = SocketFlows(book), WholeTick(book)
    last = (ours.enrich(flows, mine, True), theirs.enrich(flows, reference, True))  # type: ignore[arg-type]
    for step in steps:
        kind = step[0]
        flows = list(flows)
        if kind == "move" and flows:
            for p in step[1]:  # type: ignore[attr-defined]
                i = p % len(flows)
                f = flows[i]
                moved = replace(f, bytes_sent=(f.bytes_sent or 0) + 1, serial=0)
                flows[i] = numbered(moved, f.serial, f)
        elif kind == "copy" and flows:
            i = int(step[1]) % len(flows)  # type: ignore[call-overload]
            flows[i] = replace(flows[i])
        elif kind == "swap" and len(flows) > 1:
            i = int(step[1]) % (len(flows) - 1)  # type: ignore[call-overload]
            flows[i], flows[i + 1] = flows[i + 1], flows[i]
        elif kind == "swap and move" and len(flows) > 1:
            i = int(step[1]) % (len(flows) - 1)  # type: ignore[call-overload]
            flows[i], flows[i + 1] = flows[i + 1], flows[i]
            f = flows[i]
            flows[i] = numbered(replace(f, bytes_received=7, serial=0), f.serial, f)
        elif kind == "add":
            flows += [fresh() for _ in range(int(step[1]))]  # type: ignore[call-overload]
        elif kind == "drop" and flows:
            del flows[int(step[1]) % len(flows)]  # type: ignore[call-overload]
        elif kind == "unnumbered" and flows:
            i = int(step[1]) % len(flows)  # type: ignore[call-overload]
            flows[i] = replace(flows[i], serial=0, rev_facts=0, rev_traffic=0)
        got = ours.enrich(flows, mine, True)  # type: ignore[arg-type]
        want = theirs.enrich(flows, reference, True)  # type: ignore[arg-type]
        assert asked[0] == asked[1]  # the enricher is asked about the same flows
        assert got == want
        assert [e.flow for e in got] == [e.flow for e in want]
        assert ours.unchanged == theirs.unchanged
        assert _pattern(got, last[0]) == _pattern(want, last[1])
        last = (got, want)


def test_a_tick_with_one_moved_flow_enriches_only_that_one() -> None:
    book = SerialBook()
    flows = []
    for port in range(1000, 1050):
        f = make_flow(remote_ip="192.0.2.1", remote_port=port, local_port=port).flow
        flows.append(numbered(f, book.serial(f.key), None))
    asked: list[Flow] = []

    def enrich(f: Flow) -> EnrichedFlow:
        asked.append(f)
        return EnrichedFlow(f, REMOTES[1])

    stage = SocketFlows(book)
    first = stage.enrich(flows, enrich, True)
    asked.clear()
    moved = replace(flows[7], bytes_sent=99, serial=0)
    flows[7] = numbered(moved, flows[7].serial, flows[7])
    second = stage.enrich(flows, enrich, True)
    assert asked == [flows[7]]
    assert [i for i, (a, b) in enumerate(zip(first, second, strict=True)) if a is not b] == [7]
    assert second[7].rev_remote == first[7].rev_remote  # the same answer for the same serial
