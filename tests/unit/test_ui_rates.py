"""Rates, history and row order by serial (the change contract) equal the plain computation.

`RateTracker` and `view.flow_rows` take a fast path when every flow carries its own serial:
only flows whose revisions moved are looked at, mostly in C, and rows are made on demand.
These tests run the same snapshots through that path, through the key path (the same flows
with serial 0) and through a straightforward computation written here, and want the very
same numbers and order.
"""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from netwatch.model import Direction, EnrichedFlow, Snapshot
from netwatch.ui import view
from netwatch.ui.query import matches, parse
from netwatch.ui.stats import History, Rate, RateTracker, row_key
from tests.builders import make_flow, make_label, make_process, make_snapshot

T0 = 1_700_000_000.0
NAMES = ("curl", "firefox", "sshd", "vpnclient")


def _flow(i: int, serial: int, listeners: bool = True) -> EnrichedFlow:
    listening = listeners and i % 11 == 0  # a listener: no counters
    ef = make_flow(
        None if listening else f"93.0.{i // 250}.{i % 250}",
        0 if listening else 443,
        local_port=20000 + i,
        direction=Direction.LISTEN if listening else Direction.OUTBOUND,
        process=make_process(NAMES[i % len(NAMES)], pid=100 + i % 7),
        bytes_sent=None if listening else 100 * i,
        bytes_received=None if listening else 1000 * i,
    )
    return replace(ef, flow=replace(ef.flow, serial=serial, rev_facts=1, rev_traffic=1))


def _moved(ef: EnrichedFlow, rng: random.Random) -> EnrichedFlow:
    f = ef.flow
    if f.bytes_sent is None:
        return ef
    reset = rng.random() < 0.05  # a counter that goes back (a reused socket, a reset)
    sent = 0 if reset else f.bytes_sent + rng.randrange(0, 5000)
    received = f.bytes_received + rng.randrange(1, 50_000) if f.bytes_received else None
    return replace(
        ef,
        flow=replace(f, bytes_sent=sent, bytes_received=received, rev_traffic=f.rev_traffic + 1),
    )


def _new_facts(ef: EnrichedFlow) -> EnrichedFlow:
    f = ef.flow
    label = make_label("openvpn", "vpn", vpn=True)
    return replace(ef, flow=replace(f, label=label, state="FIN_WAIT1", rev_facts=f.rev_facts + 1))


def numbered_snapshots(
    ticks: int = 12, n: int = 60, seed: int = 7, moving: float = 0.5, listeners: bool = True
) -> list[Snapshot]:
    """A busy little host: each tick about half the flows move (`moving`), a few change facts
    only, a few are replaced (new serial, new key); one tick repeats the time (no rate)."""
    rng = random.Random(seed)
    flows = [_flow(i, i + 1, listeners) for i in range(n)]
    made = n
    out = []
    taken_at = T0
    for tick in range(1, ticks + 1):
        if tick > 1:
            for pos in range(len(flows)):
                roll = rng.random()
                if roll < moving:
                    flows[pos] = _moved(flows[pos], rng)
                if moving < roll < moving + 0.05:
                    flows[pos] = _new_facts(flows[pos])
                elif roll > 0.95:
                    flows[pos] = _flow(made, made + 1, listeners)
                    made += 1
            rng.shuffle(flows)
            taken_at += 0.0 if tick == 6 else rng.choice((1.0, 2.0))
        out.append(make_snapshot(seq=tick, flows=tuple(flows), taken_at=taken_at))
    return out


def unnumbered(snap: Snapshot) -> Snapshot:
    flows = tuple(replace(ef, flow=replace(ef.flow, serial=0)) for ef in snap.flows)
    return replace(snap, flows=flows)


def plain_rates(snaps: list[Snapshot]) -> list[list[tuple[float | None, float | None]]]:
    """Rates as the dashboard defines them, computed the obvious way, by row key."""

    def delta(now: int | None, before: int | None, seconds: float) -> float | None:
        if now is None or before is None or seconds <= 0:
            return None
        return max(0, now - before) / seconds

    prev: dict[str, tuple[int | None, int | None]] = {}
    prev_at: float | None = None
    out = []
    for snap in snaps:
        seconds = 0.0 if prev_at is None else snap.taken_at - prev_at
        tick = []
        for ef in snap.flows:
            before = prev.get(row_key(ef.flow.key))
            if before is None:
                tick.append((None, None))
            else:
                f = ef.flow
                tick.append(
                    (
                        delta(f.bytes_sent, before[0], seconds),
                        delta(f.bytes_received, before[1], seconds),
                    )
                )
        prev = {
            row_key(ef.flow.key): (ef.flow.bytes_sent, ef.flow.bytes_received) for ef in snap.flows
        }
        prev_at = snap.taken_at
        out.append(tick)
    return out


def tracked(snaps: list[Snapshot]) -> tuple[list[list[tuple[float | None, float | None]]], History]:
    tracker, history = RateTracker(), History()
    out = []
    for snap in snaps:
        rates = tracker.update(snap)
        history.add(snap, rates, tracker.active, tracker.names)
        assert tracker.keys == [row_key(ef.flow.key) for ef in snap.flows]
        assert tracker.moved == [
            (ef.flow.bytes_sent or 0) + (ef.flow.bytes_received or 0) for ef in snap.flows
        ]
        out.append([(r.up, r.down) for r in rates])
    return out, history


@pytest.mark.parametrize(
    "snaps",
    [numbered_snapshots(), numbered_snapshots(seed=9, moving=1.0, listeners=False)],
    ids=["some-move", "all-move"],
)
def test_rates_by_serial_are_the_plain_rates_and_the_key_paths(snaps: list[Snapshot]) -> None:
    by_serial, history = tracked(snaps)
    by_key, key_history = tracked([unnumbered(s) for s in snaps])
    expected = plain_rates(snaps)
    assert by_serial == expected
    assert by_key == expected
    assert list(history.total) == list(key_history.total)
    assert history.by_process.keys() == key_history.by_process.keys()
    for name, series in history.by_process.items():
        assert list(series) == list(key_history.by_process[name])
    assert any(up for tick in expected for up, _ in tick if up)  # the data really moves


def test_switching_between_numbered_and_unnumbered_snapshots_keeps_the_rates() -> None:
    snaps = numbered_snapshots(seed=11)
    mixed = [s if t % 3 else unnumbered(s) for t, s in enumerate(snaps)]
    assert tracked(mixed)[0] == plain_rates(snaps)


def test_a_moved_counter_shows_a_rate_and_a_still_flow_zero_or_none() -> None:
    still, busy, listener = _flow(1, 1), _flow(2, 2), _flow(0, 3)
    tracker = RateTracker()
    tracker.update(make_snapshot(seq=1, flows=(still, busy, listener)))
    f = busy.flow
    moved = replace(
        busy,
        flow=replace(
            f, bytes_sent=f.bytes_sent + 300, bytes_received=f.bytes_received + 900, rev_traffic=2
        ),
    )
    new = _flow(5, 9)
    rates = tracker.update(make_snapshot(seq=3, flows=(still, moved, listener, new)))
    assert (rates[0].up, rates[0].down) == (0.0, 0.0)  # its revision did not move
    assert (rates[1].up, rates[1].down) == (150.0, 450.0)  # two seconds
    assert (rates[2].up, rates[2].down) == (None, None)  # no counters
    assert (rates[3].up, rates[3].down) == (None, None)  # first seen
    assert tracker.active == [1, 3]
    rates = tracker.update(make_snapshot(seq=4, flows=(still, moved, listener, new)))
    assert (rates[1].up, rates[1].down) == (0.0, 0.0)  # stood still this time
    assert (rates[3].up, rates[3].down) == (0.0, 0.0)
    assert tracker.active == []


def plain_order(
    snap: Snapshot, rates: list[tuple[float | None, float | None]], state: view.ViewState
) -> list[str]:
    """Row keys in the order the view promises, by one obvious sort per rule."""
    items = []
    for ef, (_up, down) in zip(snap.flows, rates, strict=True):
        if not state.query.empty and not matches(state.query, ef):
            continue
        f = ef.flow
        if state.sort == "down_rate":
            value = down
        elif state.sort == "proc":
            value = None if f.process is None else (f.process.name.lower(), f.process.pid)
        else:
            value = f.bytes_sent
        moved = (f.bytes_sent or 0) + (f.bytes_received or 0)
        items.append((value, -moved, row_key(f.key)))
    known = sorted((it for it in items if it[0] is not None), key=lambda it: it[1:])
    known.sort(key=lambda it: it[0], reverse=state.reverse)
    unknown = sorted((it for it in items if it[0] is None), key=lambda it: it[1:])
    return [it[2] for it in known + unknown]


def test_row_order_by_serial_is_the_plain_order() -> None:
    snaps = numbered_snapshots(seed=3)
    expected = plain_rates(snaps)
    states = [
        view.ViewState(),
        view.ViewState(reverse=False),
        view.ViewState(sort="proc"),
        view.ViewState(sort="up", reverse=False),
        view.ViewState(query=parse("proc:curl")),
    ]
    tracker = RateTracker()
    for snap, rates in zip(snaps, expected, strict=True):
        tracker.update(snap)
        for state in states:
            fast = view.build_rows(
                snap, state, {}, snap.taken_at, tracker.keys, tracker.latest, tracker.moved
            )
            slow = view.build_rows(snap, state, tracker.rates, snap.taken_at)
            want = plain_order(snap, rates, state)
            assert [r.key for r in fast] == want
            assert [r.key for r in slow] == want
            assert [r.cells for r in fast] == [r.cells for r in slow]


def test_rate_of_a_key_is_its_rate_in_the_mapping() -> None:
    snaps = numbered_snapshots(seed=5)
    tracker = RateTracker()
    for snap in snaps:
        tracker.update(snap)
        for ef in snap.flows[:10]:
            key = row_key(ef.flow.key)
            fast = tracker.rate_of(key)
            assert fast == tracker.rates[key] and tracker.rate_of(key) is fast
    assert tracker.rate_of("tcp|0.0.0.0:1|*") == Rate()
