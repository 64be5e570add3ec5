"""Numbers the dashboard derives across snapshots: per-flow rates, throughput history, totals.

Pure and Textual-free. Rates come from consecutive snapshots by flow key (bytes now minus
bytes in the previous snapshot, over the difference of `taken_at`), so a replayed recording
shows the same rates as it did live. The history keeps a bounded window of totals for the
charts: overall and per process name.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from netwatch.model import EnrichedFlow, FlowKey, Snapshot


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


class RateTracker:
    """Remembers the previous snapshot's byte counters and turns the next into rates.

    After `update`, `keys` and the returned list are aligned with the snapshot's flows, and
    `rates` maps row keys to rates.
    """

    def __init__(self) -> None:
        self._prev: dict[str, tuple[int | None, int | None]] = {}
        self._prev_at: float | None = None
        self.rates: dict[str, Rate] = {}
        self.keys: list[str] = []

    def update(self, snapshot: Snapshot) -> list[Rate]:
        """Compute rates for this snapshot's flows; a flow seen for the first time has none."""
        seconds = 0.0 if self._prev_at is None else snapshot.taken_at - self._prev_at
        keys = [row_key(ef.flow.key) for ef in snapshot.flows]
        out: list[Rate] = []
        current: dict[str, tuple[int | None, int | None]] = {}
        prev = self._prev
        for key, ef in zip(keys, snapshot.flows, strict=True):
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
        self._prev, self._prev_at = current, snapshot.taken_at
        self.keys, self.rates = keys, dict(zip(keys, out, strict=True))
        return out


_NONE = Rate()


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

    def add(self, snapshot: Snapshot, rates: Sequence[Rate]) -> None:
        """Append this snapshot's totals (`rates` aligned with its flows); processes absent
        this time get a zero point."""
        per: dict[str, list[float]] = {}
        up_total = down_total = 0.0
        for ef, rate in zip(snapshot.flows, rates, strict=True):
            up, down = rate.up or 0.0, rate.down or 0.0
            up_total += up
            down_total += down
            acc = per.setdefault(process_name(ef), [0.0, 0.0])
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
