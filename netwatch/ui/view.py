"""Rows for the connections table from (snapshot, sort, filter, paused, grouping): pure.

This is the dashboard's model of what to show, kept out of the widgets (bandwhich's UIState,
but outside the display) so it is tested without Textual. Cells are plain text that reads
without colour: the country code is always shown next to its flag, VPN and anonymizer
traffic carries a `[VPN]`/`[ANON]` badge in words. Row keys are stable strings made from the
`FlowKey`, so the table updates rows in place and the cursor survives each tick.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from operator import attrgetter
from typing import Any, overload

from netwatch.model import Direction, EnrichedFlow, Snapshot
from netwatch.ui import fmt
from netwatch.ui.query import Query, matches
from netwatch.ui.stats import Rate, RateColumns, process_name, row_key


class Grouping(StrEnum):
    """How the table aggregates flows: one row per flow, or per process / country / ASN."""

    NONE = "flows"
    PROCESS = "process"
    COUNTRY = "country"
    ASN = "asn"

    def next(self) -> Grouping:
        """The grouping the `g` key switches to."""
        order = list(Grouping)
        return order[(order.index(self) + 1) % len(order)]


@dataclass(frozen=True, slots=True)
class Column:
    """A table column: key, header, width in cells, and whether numbers align right."""

    key: str
    label: str
    width: int
    numeric: bool = False


FLOW_COLUMNS: tuple[Column, ...] = (
    Column("proc", "Process", 16),
    Column("remote", "Remote", 21),
    Column("cc", "Cty", 5),
    Column("down_rate", "Down/s", 7, numeric=True),
    Column("up_rate", "Up/s", 7, numeric=True),
    Column("proto", "Proto", 14),
    Column("conf", "Conf", 6),
    Column("host", "Host (DNS/SNI)", 20),
    Column("dir", "Dir", 4),
    Column("age", "Age", 4, numeric=True),
    Column("down", "Down", 6, numeric=True),
    Column("up", "Up", 6, numeric=True),
    Column("asn", "ASN / Org", 24),
    Column("eyes", "Eyes", 5),
    Column("user", "User", 9),
    Column("local", "Local", 21),
)
"""The connections columns, most useful first: 80 columns show process, remote, country
and rates; 120 add protocol, name, direction and age."""

GROUP_COLUMNS: tuple[Column, ...] = (
    Column("group", "Group", 26),
    Column("flows", "Flows", 6, numeric=True),
    Column("up_rate", "Up/s", 7, numeric=True),
    Column("down_rate", "Down/s", 7, numeric=True),
    Column("up", "Up", 7, numeric=True),
    Column("down", "Down", 7, numeric=True),
    Column("vpn", "VPN", 4, numeric=True),
    Column("spread", "Where / who", 40),
)


def columns_for(grouping: Grouping) -> tuple[Column, ...]:
    """The column set of a grouping."""
    return FLOW_COLUMNS if grouping is Grouping.NONE else GROUP_COLUMNS


@dataclass(frozen=True, slots=True)
class ViewState:
    """What the user chose: sort column and order, filter, pause, grouping."""

    sort: str = "down_rate"
    reverse: bool = True
    query: Query = field(default_factory=Query)
    paused: bool = False
    grouping: Grouping = Grouping.NONE


class Row:
    """One table row: its stable key, what it stands for, and its cells.

    Flow rows format their cells only when asked (the table asks for the rows on screen), so
    a 10,000-flow snapshot costs one sort, not 150,000 formatted strings; for the same reason
    a flow row reads its VPN mark from its flow's label only when asked.
    """

    __slots__ = ("_cells", "_vpn", "flow", "group", "key", "now", "rate")

    def __init__(
        self,
        key: str,
        cells: tuple[str, ...] | None = None,
        *,
        vpn: bool | None = None,
        flow: EnrichedFlow | None = None,
        group: str | None = None,
        rate: Rate | None = None,
        now: float = 0.0,
    ) -> None:
        self.key = key
        self._cells = cells
        self._vpn = vpn
        self.flow = flow
        self.group = group
        self.rate = rate or _NO_RATE
        self.now = now

    @property
    def vpn(self) -> bool:
        """True when the row stands for VPN traffic (a flow's label says so)."""
        if self._vpn is None:
            label = None if self.flow is None else self.flow.flow.label
            self._vpn = label is not None and label.vpn
        return self._vpn

    @property
    def cells(self) -> tuple[str, ...]:
        """The row's text, one string per column."""
        if self._cells is None:
            assert self.flow is not None  # noqa: S101  # flow rows are built with a flow
            self._cells = tuple(fn(self.flow, self.rate, self.now) for fn in _CELL_FUNCS)
        return self._cells

    def __repr__(self) -> str:
        return f"Row({self.key!r})"


class FlowRows(Sequence[Row]):
    """Flow rows in display order, each made when first asked for.

    The table asks for the rows on screen and the view only sorts positions, so a tick of
    10,000 flows makes a few dozen `Row` objects instead of 10,000. `keys` are the rows' keys
    in order (what `FlowsTable.apply` needs from every row).
    """

    __slots__ = ("_flows", "_made", "_now", "_positions", "_rates", "keys")

    def __init__(
        self,
        keys: list[str],
        positions: list[int],
        flows: Sequence[EnrichedFlow],
        rates: Sequence[Rate],
        now: float,
    ) -> None:
        self.keys = keys
        self._positions = positions
        self._flows = flows
        self._rates = rates
        self._now = now
        self._made: dict[int, Row] = {}

    def __len__(self) -> int:
        return len(self.keys)

    @overload
    def __getitem__(self, index: int) -> Row: ...
    @overload
    def __getitem__(self, index: slice) -> list[Row]: ...
    def __getitem__(self, index: int | slice) -> Row | list[Row]:
        if isinstance(index, slice):
            return [self[i] for i in range(len(self))[index]]
        if index < 0:
            index += len(self.keys)
        row = self._made.get(index)
        if row is None:
            at = self._positions[index]
            row = Row(self.keys[index], flow=self._flows[at], rate=self._rates[at], now=self._now)
            self._made[index] = row
        return row


_NO_RATE = Rate()


def _age(ef: EnrichedFlow, now: float) -> float | None:
    first = ef.flow.first_seen
    return None if first is None else max(0.0, now - first)


Cell = Callable[[EnrichedFlow, Rate, float], str]

_CELLS: dict[str, Cell] = {
    "proc": lambda ef, _r, _n: fmt.process(ef.flow.process, 16),
    "dir": lambda ef, _r, _n: fmt.direction(ef.flow.direction),
    "remote": lambda ef, _r, _n: "*" if ef.flow.key.remote is None else str(ef.flow.key.remote),
    "host": lambda ef, _r, _n: ef.flow.dns_name or ef.flow.sni or ef.flow.http_host or "",
    "cc": lambda ef, _r, _n: fmt.place(ef),
    "proto": lambda ef, _r, _n: fmt.proto(ef, 14),
    "conf": lambda ef, _r, _n: "" if ef.flow.label is None else ef.flow.label.confidence.value,
    "down_rate": lambda _e, r, _n: fmt.rate(r.down),
    "up_rate": lambda _e, r, _n: fmt.rate(r.up),
    "age": lambda ef, _r, n: fmt.duration(_age(ef, n)),
    "down": lambda ef, _r, _n: fmt.size(ef.flow.bytes_received),
    "up": lambda ef, _r, _n: fmt.size(ef.flow.bytes_sent),
    "asn": lambda ef, _r, _n: fmt.asn(ef.remote),
    "eyes": lambda ef, _r, _n: fmt.eyes(ef.remote),
    "user": lambda ef, _r, _n: (ef.flow.process.user or "") if ef.flow.process else "",
    "local": lambda ef, _r, _n: str(ef.flow.key.local),
}
_CELL_FUNCS = tuple(_CELLS[c.key] for c in FLOW_COLUMNS)


def _flow_sort_value(col: str, ef: EnrichedFlow, rate: Rate, now: float) -> Any:
    f = ef.flow
    if col == "down_rate":
        return rate.down
    if col == "conf":
        return None if f.label is None else f.label.confidence.rank
    if col == "up_rate":
        return rate.up
    if col == "down":
        return f.bytes_received
    if col == "up":
        return f.bytes_sent
    if col == "age":
        return _age(ef, now)
    if col == "proc":
        p = f.process
        return None if p is None else (p.name.lower(), p.pid)
    if col == "remote":
        k = f.key.remote
        return None if k is None else (k.ip.version, int(k.ip), k.port)
    if col == "local":
        return (f.key.local.ip.version, int(f.key.local.ip), f.key.local.port)
    if col == "asn":
        return None if ef.remote is None or ef.remote.asn is None else ef.remote.asn
    text = _CELLS[col](ef, rate, now)
    return text.lower() if text else None


_FLOW = attrgetter("flow")
_DOWN = attrgetter("down")
_UP = attrgetter("up")


def _order(
    positions: Sequence[int],
    values: Sequence[Any] | Mapping[int, Any],
    moved: Sequence[int],
    ids: Sequence[str],
    reverse: bool,
) -> list[int]:
    """`positions` sorted by value; ties (and the first tick, when no rate is known yet) put
    the flows that moved most bytes first, then key order; values None always come last.

    Three stable sorts with one plain key each (key text, bytes moved, value), every key read
    with `__getitem__` of a list or dict by position, so CPython compares in C, with its
    type-specialised comparisons, instead of calling Python or comparing a tuple per flow.
    """
    order = sorted(positions, key=ids.__getitem__)
    order.sort(key=moved.__getitem__, reverse=True)
    unknown: list[int] = []
    if None in (values.values() if isinstance(values, Mapping) else values):
        unknown = [i for i in order if values[i] is None]
        order = [i for i in order if values[i] is not None]
    order.sort(key=values.__getitem__, reverse=reverse)
    return order + unknown if unknown else order


def _unique(keys: Sequence[str], positions: Sequence[int]) -> list[str]:
    """Row ids for keys: two sockets can share a key (SO_REUSEPORT listeners, the same tuple in
    two network namespaces); both are shown (in `positions`), and row keys must stay unique."""
    seen: dict[str, int] = {}
    out = list(keys)
    for i in positions:
        key = keys[i]
        dup = seen.get(key, 0)
        seen[key] = dup + 1
        if dup:
            out[i] = f"{key}#{dup + 1}"
    return out


def flow_rows(
    flows: Sequence[EnrichedFlow],
    state: ViewState,
    rates: Mapping[str, Rate],
    now: float,
    keys: Sequence[str] | None = None,
    aligned: Sequence[Rate] | None = None,
    moved: Sequence[int] | None = None,
) -> FlowRows:
    """One row per flow that passes the filter, sorted as the state says.

    `aligned` and `moved`, when given, hold each flow's rate and bytes moved so far in order
    (`RateTracker.latest` and `.moved`), which saves a lookup by key and a visit per flow;
    otherwise rates are looked up in `rates`. Rates as `stats.RateColumns` sort by their
    column of numbers without a `Rate` being made.
    """
    valid = {c.key for c in FLOW_COLUMNS}
    col = state.sort if state.sort in valid else "down_rate"
    if keys is None:
        keys = [row_key(ef.flow.key) for ef in flows]
    if aligned is None:
        aligned = [rates.get(key, _NO_RATE) for key in keys]
    if moved is None:
        moved = [(f.bytes_sent or 0) + (f.bytes_received or 0) for f in map(_FLOW, flows)]
    positions: Sequence[int] = range(len(flows))
    if not state.query.empty:
        positions = [i for i, ef in enumerate(flows) if matches(state.query, ef)]
    ids = keys if len(set(keys)) == len(keys) else _unique(keys, positions)
    values: Sequence[Any] | Mapping[int, Any]
    if col in ("down_rate", "up_rate"):
        if isinstance(aligned, RateColumns):
            values = aligned.downs if col == "down_rate" else aligned.ups
        else:
            values = list(map(_DOWN if col == "down_rate" else _UP, aligned))
    else:  # no other column reads the rate
        values = {i: _flow_sort_value(col, flows[i], _NO_RATE, now) for i in positions}
    order = _order(positions, values, moved, ids, state.reverse)
    return FlowRows(list(map(ids.__getitem__, order)), order, flows, aligned, now)


def _sorted(items: list[tuple[Any, Row]], reverse: bool) -> list[Row]:
    """Sort group rows by value, ties in key order; rows without a value always come last."""
    items.sort(key=lambda it: it[1].key)
    known = [it for it in items if it[0] is not None]
    unknown = [it[1] for it in items if it[0] is None]
    known.sort(key=lambda it: it[0], reverse=reverse)
    return [it[1] for it in known] + unknown


def group_name(ef: EnrichedFlow, grouping: Grouping) -> str:
    """The group a flow falls in."""
    if grouping is Grouping.PROCESS:
        return process_name(ef)
    r = ef.remote
    if grouping is Grouping.COUNTRY:
        return fmt.place(ef) or "--"
    return fmt.asn(r) or "(no ASN)"


@dataclass
class _Acc:
    flows: int = 0
    up_rate: float = 0.0
    down_rate: float = 0.0
    up: int = 0
    down: int = 0
    vpn: int = 0
    spread: dict[str, int] = field(default_factory=dict)


def _spread_of(ef: EnrichedFlow, grouping: Grouping) -> str:
    if grouping is Grouping.PROCESS:
        if ef.flow.key.remote is None:
            return "listen"
        return (ef.remote.country if ef.remote else None) or fmt.place(ef) or "--"
    return process_name(ef)


def group_rows(
    flows: Sequence[EnrichedFlow],
    state: ViewState,
    rates: Mapping[str, Rate],
    keys: Sequence[str] | None = None,
    aligned: Sequence[Rate] | None = None,
) -> list[Row]:
    """One row per group (process, country or ASN) of the flows that pass the filter."""
    accs: dict[str, _Acc] = {}
    if aligned is None:
        if keys is None:
            keys = [row_key(ef.flow.key) for ef in flows]
        aligned = [rates.get(key, _NO_RATE) for key in keys]
    for rate, ef in zip(aligned, flows, strict=True):
        if not state.query.empty and not matches(state.query, ef):
            continue
        acc = accs.setdefault(group_name(ef, state.grouping), _Acc())
        f = ef.flow
        acc.flows += 1
        acc.up_rate += rate.up or 0.0
        acc.down_rate += rate.down or 0.0
        acc.up += f.bytes_sent or 0
        acc.down += f.bytes_received or 0
        acc.vpn += 1 if f.label is not None and f.label.vpn else 0
        spread = _spread_of(ef, state.grouping)
        acc.spread[spread] = acc.spread.get(spread, 0) + 1
    items: list[tuple[Any, Row]] = []
    for name, a in accs.items():
        spread = " ".join(
            f"{k}×{n}" if n > 1 else k for k, n in sorted(a.spread.items(), key=lambda kv: -kv[1])
        )
        cells = (
            name,
            str(a.flows),
            fmt.rate(a.up_rate),
            fmt.rate(a.down_rate),
            fmt.size(a.up),
            fmt.size(a.down),
            str(a.vpn) if a.vpn else "",
            spread,
        )
        values = {
            "group": name.lower(),
            "flows": a.flows,
            "up_rate": a.up_rate,
            "down_rate": a.down_rate,
            "up": a.up,
            "down": a.down,
            "vpn": a.vpn,
            "spread": spread,
        }
        row = Row(f"group|{name}", cells, vpn=a.vpn > 0, group=name)
        items.append((values.get(state.sort, a.down_rate + a.up_rate), row))
    return _sorted(items, state.reverse)


def build_rows(
    snapshot: Snapshot,
    state: ViewState,
    rates: Mapping[str, Rate],
    now: float,
    keys: Sequence[str] | None = None,
    aligned: Sequence[Rate] | None = None,
    moved: Sequence[int] | None = None,
) -> Sequence[Row]:
    """The rows to show for a snapshot under the current view state.

    `rates` is keyed by row key (`stats.row_key`); `keys`, `aligned` and `moved`, when
    given, are the flows' row keys, rates and bytes moved in order (`RateTracker.keys`,
    `.latest` and `.moved`: it already made them, so no FlowKey is hashed twice and no rate
    is looked up by key).
    """
    if state.grouping is Grouping.NONE:
        return flow_rows(snapshot.flows, state, rates, now, keys, aligned, moved)
    return group_rows(snapshot.flows, state, rates, keys, aligned)


def flow_count(rows: Sequence[Row]) -> int:
    """How many flows the rows stand for (a group row counts its flows)."""
    if isinstance(rows, FlowRows):
        return len(rows)
    return sum(int(r.cells[1]) if r.group is not None else 1 for r in rows)


def is_listening(ef: EnrichedFlow) -> bool:
    """True for listening sockets (no remote side)."""
    return ef.flow.direction is Direction.LISTEN or ef.flow.key.remote is None
