"""Time to apply a snapshot of 1,000 and 10,000 flows to the dashboard's table.

Runs the real NetwatchApp headless (Textual's run_test) at 120x40 and, per tick, times:
  stats    - RateTracker.update + History.add (every snapshot, paused or not)
  view     - view.build_rows (filter, sort; cells are formatted later, only for visible rows)
  apply    - FlowsTable.apply (by key: add and remove rows, set the order; no cell copied)
  repaint  - the next screen update after apply (paints the visible rows and columns); it
             includes pilot.pause()'s own cost, shown on the "nothing changed" row
and, as the baseline the design was chosen against, the public DataTable path
(`clear()` + `add_row` per flow). Each tick changes byte counters of every flow and replaces
2 % of the flows, like a busy host. Prints median and p95 in milliseconds; never asserts.

    python bench/ui.py [--ticks 15]
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.text import Text  # noqa: E402
from textual.widgets import DataTable  # noqa: E402

from netwatch.feed import ReplayFeed  # noqa: E402
from netwatch.model import (  # noqa: E402
    Attribution,
    Direction,
    Endpoint,
    EnrichedFlow,
    Flow,
    FlowKey,
    ProcessRef,
    RemoteInfo,
    Scope,
    Snapshot,
    Transport,
)
from netwatch.ui import view  # noqa: E402
from netwatch.ui.app import NetwatchApp  # noqa: E402
from netwatch.ui.stats import History, RateTracker  # noqa: E402
from netwatch.ui.widgets.flows_table import FlowsTable  # noqa: E402

T0 = 1_700_000_000.0
NAMES = ("firefox", "chrome", "vpnclient", "sshd", "curl", "python3", "syncthing", "steam")
COUNTRIES = ("US", "DE", "RU", "JP", "NL", "FR", "CN", "BR", None)


def make_flow(i: int, tick: int) -> EnrichedFlow:
    local = Endpoint(ipaddress.IPv4Address("192.168.1.13"), 20000 + i % 40000)
    rip = ipaddress.IPv4Address(0x5D000000 + i * 7)
    key = FlowKey(Transport.TCP, local, Endpoint(rip, 443 if i % 3 else 8443))
    proc = ProcessRef(1000 + i % 300, T0, NAMES[i % len(NAMES)], user="alice")
    remote = RemoteInfo(
        rip, Scope.GLOBAL, COUNTRIES[i % len(COUNTRIES)], 64500 + i % 50, f"Org {i % 50}"
    )
    flow = Flow(
        key=key,
        direction=Direction.OUTBOUND,
        state="ESTABLISHED",
        process=proc,
        attribution=Attribution.SOCKET,
        first_seen=T0 - i % 600,
        last_seen=T0 + tick,
        bytes_sent=(i % 97 + 1) * 100 * tick,
        bytes_received=(i % 89 + 1) * 1000 * tick,
        sni=f"host{i % 500}.example.net",
    )
    return EnrichedFlow(flow, remote)


def snapshots(n: int, ticks: int) -> Iterator[Snapshot]:
    """One snapshot per tick, made when asked: like the app, only a couple are alive at once
    (holding them all would make the garbage collector's full passes the thing measured)."""
    churn = max(1, n // 50)
    for tick in range(1, ticks + 1):
        base = tick * churn
        flows = tuple(make_flow(i, tick) for i in range(base, base + n))
        yield Snapshot(seq=tick, taken_at=T0 + tick, interval=1.0, flows=flows)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p * (len(ordered) - 1)))]


async def run_size(n: int, ticks: int) -> dict[str, list[float]]:
    snaps = snapshots(n, ticks)
    app = NetwatchApp(ReplayFeed([]), now=lambda: T0)
    times: dict[str, list[float]] = {
        "view": [],
        "apply": [],
        "repaint": [],
        "first": [],
        "idle": [],
        "stats": [],
    }
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.query_one(FlowsTable)
        rates = RateTracker()
        history = History()
        state = view.ViewState()
        for index, snap in enumerate(snaps):
            ts = time.perf_counter()
            history.add(snap, rates.update(snap))
            stats_ms = (time.perf_counter() - ts) * 1000
            t0 = time.perf_counter()
            rows = view.build_rows(snap, state, rates.rates, T0, rates.keys)
            t1 = time.perf_counter()
            table.apply(rows)
            t2 = time.perf_counter()
            await pilot.pause()
            t3 = time.perf_counter()
            if index == 0:
                times["first"].append((t2 - t1) * 1000)
                continue
            times["stats"].append(stats_ms)
            times["view"].append((t1 - t0) * 1000)
            times["apply"].append((t2 - t1) * 1000)
            times["repaint"].append((t3 - t2) * 1000)
            t4 = time.perf_counter()
            await pilot.pause()
            times["idle"].append((time.perf_counter() - t4) * 1000)
    return times


async def run_baseline(n: int, ticks: int) -> list[float]:
    """The public API: clear() and add_row for every flow, each tick."""
    snaps = snapshots(n, ticks)
    app = NetwatchApp(ReplayFeed([]), now=lambda: T0)
    out: list[float] = []
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.query_one(FlowsTable)
        rates = RateTracker()
        state = view.ViewState()
        for snap in snaps:
            rates.update(snap)
            rows = view.build_rows(snap, state, rates.rates, T0, rates.keys)
            t0 = time.perf_counter()
            DataTable.clear(table)
            for row in rows:
                DataTable.add_row(table, *(Text(c) for c in row.cells), key=row.key)
            await pilot.pause()
            out.append((time.perf_counter() - t0) * 1000)
    return out[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=15)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    args = parser.parse_args()
    print(f"ticks per size: {args.ticks} (first tick reported separately); times in ms")
    header = f"{'flows':>7} | {'step':<28} | {'median':>8} | {'p95':>8}"
    print(header)
    print("-" * len(header))
    for n in args.sizes:
        times = asyncio.run(run_size(n, args.ticks))
        base = asyncio.run(run_baseline(n, max(4, args.ticks // 3)))
        rows = [
            ("first apply (all rows new)", times["first"]),
            ("rates + history (stats)", times["stats"]),
            ("view.build_rows", times["view"]),
            ("FlowsTable.apply (by key)", times["apply"]),
            ("repaint after apply", times["repaint"]),
            ("pilot.pause, nothing changed", times["idle"]),
            ("baseline clear+add_row+paint", base),
        ]
        for name, values in rows:
            med = statistics.median(values)
            print(f"{n:>7} | {name:<28} | {med:>8.1f} | {pct(values, 0.95):>8.1f}")


if __name__ == "__main__":
    main()
