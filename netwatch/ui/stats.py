"""Numbers the dashboard derives across snapshots: per-flow rates, throughput history, totals.

Pure and Textual-free. Rates come from consecutive snapshots (bytes now minus bytes in the
previous snapshot, over the difference of `taken_at`), so a replayed recording shows the same
rates as it did live; flows are matched by serial when the change contract numbers them
(only flows whose revisions moved are looked at) and by flow key otherwise. The history
keeps a bounded window of totals for the charts: overall and per process name.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import compress, repeat
from operator import add, attrgetter, is_, ne, sub, truediv
from typing import cast, overload

from netwatch.model import EnrichedFlow, Flow, FlowKey, Snapshot


@dataclass(frozen=True, slots=True)
class Rate:
    """Bytes per second up (sent) and down (received); None when not measurable yet."""

    up: float | None = None
    down: float | None = None


def _delta(now: int | None, before: int | None, seconds: float) -> float | None:
    if now is None or before is None or seconds <= 0:
        return None
    return max(0, now - before) / seconds


@lru_cache(maxsize=1 << 17)
def row_key(key: FlowKey) -> str:
    """A stable string for a flow key: the table's row key and the key of every per-flow map.

    Hashing a `FlowKey` (nested dataclasses and ipaddress objects) costs microseconds and
    strings cache their hash, so each tick hashes each key once, here, and then uses strings.
    """
    remote = "*" if key.remote is None else str(key.remote)
    return f"{key.transport.value}|{key.local}|{remote}"


class RateColumns(Sequence[Rate]):
    """Rates aligned with a snapshot's flows, kept as two columns of numbers.

    A `Rate` object is made for a position only when it is asked for (the table asks for the
    rows on screen), so 10,000 flows cost two lists a tick, not 10,000 objects; the view sorts
    on `downs` or `ups` directly.
    """

    __slots__ = ("_made", "downs", "ups")

    def __init__(self, ups: list[float | None], downs: list[float | None]) -> None:
        self.ups = ups
        self.downs = downs
        self._made: dict[int, Rate] = {}

    def __len__(self) -> int:
        return len(self.ups)

    @overload
    def __getitem__(self, index: int) -> Rate: ...
    @overload
    def __getitem__(self, index: slice) -> list[Rate]: ...
    def __getitem__(self, index: int | slice) -> Rate | list[Rate]:
        if isinstance(index, slice):
            return [self[i] for i in range(len(self))[index]]
        made = self._made.get(index)
        if made is None:
            made = self._made[index] = Rate(self.ups[index], self.downs[index])
        return made


class RateTracker:
    """Remembers the previous snapshot's byte counters and turns the next into rates.

    After `update`, `keys`, `latest` (the returned rates) and `moved` (bytes each flow moved
    so far, unknown counters as 0) are aligned with the snapshot's flows, `rates` maps row
    keys to rates, and `active` lists the positions whose rate may be non-zero (None: any
    may be), so the history sums only those, with `names` their process names (`process_name`,
    kept by serial and read again only when `rev_facts` moved).

    Two paths give the same numbers. When every flow carries its own serial (the change
    contract, docs/architecture.md section 4), everything is remembered by serial and only
    flows whose revisions moved are looked at: a flow whose `rev_traffic` did not move has
    the very counters it had, so its rate is the delta 0 (0.0, or None for an unknown
    counter) without reading it, and one whose `rev_facts` did not move keeps its row key.
    Even the flows that moved are handled in C-level walks (`map` over the columns of
    counters), so a tick is a few passes over the snapshot, not a Python loop per flow.
    Without serials (hand-built flows, old recordings, a serial seen twice) each flow is
    looked up by its row key, one by one, as before serials existed.
    """

    def __init__(self) -> None:
        self._prev: dict[str, tuple[int | None, int | None]] = {}
        self._prev_at: float | None = None
        self._rates: dict[str, Rate] | None = {}
        self.latest: Sequence[Rate] = []
        self.keys: list[str] = []
        self.moved: list[int] = []
        self.active: list[int] | None = None
        self.names: list[str] | None = None
        # The serial path's memory, each keyed by serial: last tick's rev_facts and
        # rev_traffic, the row key, the counters, the bytes moved, the rate shown.
        self._facts_of: dict[int, int] = {}
        self._traffic_of: dict[int, int] = {}
        self._key_of: dict[int, str] = {}
        self._name_of: dict[int, str] = {}
        self._sent_of: dict[int, int | None] = {}
        self._received_of: dict[int, int | None] = {}
        self._moved_of: dict[int, int] = {}
        self._up_of: dict[int, float | None] = {}
        self._down_of: dict[int, float | None] = {}
        self._moving: list[int] = []

    @property
    def rates(self) -> dict[str, Rate]:
        """Rates by row key (made on first use: the dashboard reads `latest` instead)."""
        if self._rates is None:
            self._rates = dict(zip(self.keys, self.latest, strict=True))
        return self._rates

    def rate_of(self, key: str) -> Rate:
        """The rate of the flow with this row key (no rate when it is not in the snapshot).

        An open detail screen asks each tick: one scan of the keys in C (the last flow with
        the key, as in `rates`), not a `Rate` made for each of 10,000 flows.
        """
        if self._rates is not None:
            return self._rates.get(key) or _NONE
        if key not in self.keys:
            return _NONE
        return self.latest[len(self.keys) - 1 - self.keys[::-1].index(key)]

    def update(self, snapshot: Snapshot) -> Sequence[Rate]:
        """Compute rates for this snapshot's flows; a flow seen for the first time has none."""
        seconds = 0.0 if self._prev_at is None else snapshot.taken_at - self._prev_at
        flows = snapshot.flows
        bare = list(map(_FLOW, flows))  # then one plain attribute per walk: no tuple per flow
        serials = list(map(_SERIAL, bare))
        numbered = set(serials)
        if len(numbered) == len(flows) and 0 not in numbered:
            self._by_serial(flows, bare, serials, numbered, seconds)
        else:
            self._by_key(flows, seconds)
        self._prev_at = snapshot.taken_at
        self._rates = None
        return self.latest

    def _by_key(self, flows: Sequence[EnrichedFlow], seconds: float) -> None:
        """Every flow by row key: the path for flows without (unique) serials."""
        if self._sent_of:  # coming from the serial path: its counters by row key
            key_of, received_of = self._key_of, self._received_of
            self._prev = {key_of[s]: (n, received_of[s]) for s, n in self._sent_of.items()}
            self._forget(set(self._sent_of))
            self._moving = []
        keys = [row_key(ef.flow.key) for ef in flows]
        out: list[Rate] = []
        current: dict[str, tuple[int | None, int | None]] = {}
        prev = self._prev
        for key, ef in zip(keys, flows, strict=True):
            f = ef.flow
            current[key] = (f.bytes_sent, f.bytes_received)
            before = prev.get(key)
            if before is None:
                out.append(_NONE)
                continue
            out.append(
                Rate(
                    _delta(f.bytes_sent, before[0], seconds),
                    _delta(f.bytes_received, before[1], seconds),
                )
            )
        self._prev = current
        self.keys, self.latest, self.active, self.names = keys, out, None, None
        self.moved = [(f.bytes_sent or 0) + (f.bytes_received or 0) for f in map(_FLOW, flows)]

    def _by_serial(
        self,
        flows: Sequence[EnrichedFlow],
        bare: list[Flow],
        serials: list[int],
        numbered: set[int],
        seconds: float,
    ) -> None:
        """Only flows whose revisions moved are visited, and those mostly in C."""
        facts_of, traffic_of, key_of = self._facts_of, self._traffic_of, self._key_of
        sent_of, received_of, moved_of = self._sent_of, self._received_of, self._moved_of
        up_of, down_of = self._up_of, self._down_of
        everything = range(len(flows))
        # Positions whose rev_facts (rev_traffic) is not last tick's for that serial; a new
        # serial has neither.
        facts = list(map(_FACTS, bare))
        renamed = list(compress(everything, map(ne, map(facts_of.get, serials), facts)))
        traffic = list(map(_TRAFFIC, bare))
        moving = list(compress(everything, map(ne, map(traffic_of.get, serials), traffic)))
        name_of = self._name_of
        for i in renamed:
            flow = bare[i]
            key_of[serials[i]] = row_key(flow.key)
            name_of[serials[i]] = "?" if flow.process is None else flow.process.name
        facts_of.update(
            zip(map(serials.__getitem__, renamed), map(facts.__getitem__, renamed), strict=True)
        )
        traffic_of.update(
            zip(map(serials.__getitem__, moving), map(traffic.__getitem__, moving), strict=True)
        )
        everyone = len(moving) == len(flows)  # a busy tick: skip the walks that pick movers
        # Rates shown last tick by flows that stand still now fall back to the delta 0.
        if not everyone:
            for serial in set(self._moving).difference(map(serials.__getitem__, moving)):
                if serial in sent_of:
                    up_of[serial] = None if sent_of[serial] is None else 0.0
                    down_of[serial] = None if received_of[serial] is None else 0.0
        ms = serials if everyone else list(map(serials.__getitem__, moving))
        movers = bare if everyone else list(map(bare.__getitem__, moving))
        sent = list(map(_SENT, movers))
        received = list(map(_RECEIVED, movers))
        if self._prev:  # coming from the key path: its counters for serials new here
            for serial, i in zip(ms, moving, strict=True):
                if serial not in sent_of:
                    before_key = self._prev.get(row_key(flows[i].flow.key))
                    if before_key is not None:
                        sent_of[serial], received_of[serial] = before_key
            self._prev = {}
        ups = _deltas(sent, list(map(sent_of.get, ms)), seconds)
        downs = _deltas(received, list(map(received_of.get, ms)), seconds)
        sent_of.update(zip(ms, sent, strict=True))
        received_of.update(zip(ms, received, strict=True))
        if None in sent or None in received:
            totals = [(a or 0) + (b or 0) for a, b in zip(sent, received, strict=True)]
        else:
            totals = list(map(add, sent, received))
        moved_of.update(zip(ms, totals, strict=True))
        up_of.update(zip(ms, ups, strict=True))
        down_of.update(zip(ms, downs, strict=True))
        if len(facts_of) > len(numbered):  # flows went away: forget them
            self._forget(facts_of.keys() - numbered)
        self._moving = ms
        self.keys = list(map(key_of.__getitem__, serials))
        self.moved = totals if everyone else list(map(moved_of.__getitem__, serials))
        if seconds > 0 and everyone:
            self.latest = RateColumns(ups, downs)
        elif seconds > 0:
            self.latest = RateColumns(
                list(map(up_of.__getitem__, serials)), list(map(down_of.__getitem__, serials))
            )
        else:  # no time passed: no rate (as `_delta` says), and none shown next tick either
            self.latest = RateColumns([None] * len(flows), [None] * len(flows))
            self._moving = serials
        self.active = moving
        self.names = list(map(name_of.__getitem__, ms))

    def _forget(self, serials: Iterable[int]) -> None:
        for serial in serials:
            del self._facts_of[serial], self._traffic_of[serial], self._key_of[serial]
            del self._name_of[serial]
            del self._moved_of[serial]
            del self._sent_of[serial], self._received_of[serial]
            del self._up_of[serial], self._down_of[serial]


def _deltas(now: list[int | None], before: list[int | None], seconds: float) -> list[float | None]:
    """`_delta` for two columns of counters, in C; a flow new this tick (no counter before)
    gets None, and only unknown counters now (rare: no socket counters) cost a Python step."""
    if seconds <= 0:
        return [None] * len(now)
    if None in now:
        return [_delta(a, b, seconds) for a, b in zip(now, before, strict=True)]
    new = list(compress(range(len(before)), map(is_, before, repeat(None))))
    known = cast("list[int]", before if not new else list(before))
    for i in new:
        known[i] = 0
    moved = list(map(sub, cast("list[int]", now), known))  # no None in either (checked above)
    if moved and min(moved) < 0:  # a counter went back (reset): clamp, as `_delta` does
        moved = list(map(max, moved, repeat(0)))
    out: list[float | None] = list(map(truediv, moved, repeat(seconds)))
    for i in new:
        out[i] = None
    return out


_NONE = Rate()
_SERIAL = attrgetter("serial")
_FACTS = attrgetter("rev_facts")
_TRAFFIC = attrgetter("rev_traffic")
_FLOW = attrgetter("flow")
_SENT = attrgetter("bytes_sent")
_RECEIVED = attrgetter("bytes_received")


@dataclass(frozen=True, slots=True)
class Point:
    """Total throughput at one snapshot."""

    at: float
    up: float
    down: float


def process_name(ef: EnrichedFlow) -> str:
    """The name the dashboard groups a flow's process under ("?" when unattributed)."""
    p = ef.flow.process
    return "?" if p is None else p.name


class History:
    """Throughput over the last `window` snapshots, total and per process name."""

    def __init__(self, window: int = 300) -> None:
        self.window = window
        self.total: deque[Point] = deque(maxlen=window)
        self.by_process: dict[str, deque[Point]] = {}

    def add(
        self,
        snapshot: Snapshot,
        rates: Sequence[Rate],
        active: Sequence[int] | None = None,
        names: Sequence[str] | None = None,
    ) -> None:
        """Append this snapshot's totals (`rates` aligned with its flows); processes absent
        this time get a zero point.

        `active` (`RateTracker.active`) lists the only positions whose rate can be non-zero;
        the others add nothing, so on a quiet tick the sums visit a handful of flows.
        `names` (`RateTracker.names`), aligned with `active`, are their process names.
        """
        per: dict[str, list[float]] = {}
        up_total = down_total = 0.0
        flows = snapshot.flows
        if isinstance(rates, RateColumns):
            ups, downs = rates.ups, rates.downs
        else:
            ups, downs = [r.up for r in rates], [r.down for r in rates]
        positions = range(len(flows)) if active is None else active
        if names is None or active is None:
            names = list(map(process_name, map(flows.__getitem__, positions)))
        for up, down, name in zip(
            map(ups.__getitem__, positions), map(downs.__getitem__, positions), names, strict=True
        ):
            up, down = up or 0.0, down or 0.0
            if not (up or down):
                continue
            up_total += up
            down_total += down
            acc = per.get(name)
            if acc is None:
                per[name] = [up, down]
            else:
                acc[0] += up
                acc[1] += down
        at = snapshot.taken_at
        self.total.append(Point(at, up_total, down_total))
        for name in set(per) | set(self.by_process):
            series = self.by_process.setdefault(name, deque(maxlen=self.window))
            up, down = per.get(name, (0.0, 0.0))
            series.append(Point(at, up, down))
        for name in [n for n, s in self.by_process.items() if not any(p.up or p.down for p in s)]:
            del self.by_process[name]

    def series(self, process: str | None = None) -> list[float]:
        """Up plus down per point, for a sparkline; `process` None means all traffic."""
        points: Iterable[Point] = (
            self.total if process is None else self.by_process.get(process, ())
        )
        return [p.up + p.down for p in points]


_SCOPES = {"private": "lan", "loopback": "lo", "link_local": "lnk", "multicast": "mc"}


def bytes_by_country(flows: Iterable[EnrichedFlow]) -> list[tuple[str, int]]:
    """Total bytes (both ways) per remote country (`lan`, `lo` for local scopes), largest first."""
    totals: dict[str, int] = {}
    for ef in flows:
        f = ef.flow
        moved = (f.bytes_sent or 0) + (f.bytes_received or 0)
        if ef.remote is None or f.key.remote is None:
            continue
        code = ef.remote.country or _SCOPES.get(ef.remote.scope.value, "--")
        totals[code] = totals.get(code, 0) + moved
    return sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))
