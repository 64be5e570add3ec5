"""Time the dashboard's whole tick at 1,000 and 10,000 flows, in two scenarios.

Runs the real NetwatchApp headless (Textual's run_test) at 120x40 and, per snapshot, times
in CPU time (process time: the machine may be shared, and a step's cost is the CPU it takes)
the steps the app runs for it (`NetwatchApp.on_snapshot_ready` and `render_snapshot`):
  stats    - RateTracker.update + History.add (every snapshot, paused or not)
  view     - view.build_rows (filter, sort; cells are formatted later, only for visible rows)
  apply    - FlowsTable.apply (by key: add and remove rows, set the order; no cell copied)
  repaint  - the next screen update (process time across pilot.pause(), which waits for the
             app to go idle); its wall time includes the pilot's own 20 ms sleep
             granularity, so it is shown apart ("wall") and left out of the total
  total    - stats + view + apply + repaint, per tick (and the first three in wall time)
and, as the baseline the design was chosen against, the public DataTable path
(`clear()` + `add_row` per flow).

Snapshots are made like the delta decoder makes them: each flow has a fixed `serial`; a flow
whose counters moved is a new object with `rev_traffic` moved, an unchanged flow is last
tick's object, and a replaced flow gets a new serial and key. Two scenarios:
  busy  - every flow's counters move each tick and 2 % of the flows are replaced
  quiet - 5 % of the flows move (a different 5 % each tick) and 0.5 % are replaced: an idle
          desktop, the common case
Prints median and p95 in milliseconds; never asserts.

    python bench/ui.py [--ticks 15] [--sizes 1000 10000] [--scenarios busy quiet]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
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
SCENARIOS = {"busy": (1.0, 0.02), "quiet": (0.05, 0.005)}
"""Scenario: (share of flows whose counters move per tick, share replaced per tick)."""


def make_flow(i: int, tick: int) -> EnrichedFlow:
    """Flow number `i` as it is at `tick`; its serial is i + 1 (never 0)."""
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
        serial=i + 1,
        rev_facts=1,
        rev_traffic=tick,
    )
    return EnrichedFlow(flow, remote)


def moved(ef: EnrichedFlow, i: int, tick: int) -> EnrichedFlow:
    """Flow `i` with its counters (and so `rev_traffic`) moved to `tick`'s values."""
    flow = dataclasses.replace(
        ef.flow,
        last_seen=T0 + tick,
        bytes_sent=(i % 97 + 1) * 100 * tick,
        bytes_received=(i % 89 + 1) * 1000 * tick,
        rev_traffic=tick,
    )
    return EnrichedFlow(flow, ef.remote)


def snapshots(n: int, ticks: int, scenario: str = "busy") -> Iterator[Snapshot]:
    """One snapshot per tick, made when asked: like the app, only a couple are alive at once
    (holding them all would make the garbage collector's full passes the thing measured)."""
    share, replaced = SCENARIOS[scenario]
    churn = max(1, round(n * replaced))
    step = max(1, round(1 / share))
    first = 0
    flows = [make_flow(i, 1) for i in range(n)]
    for tick in range(1, ticks + 1):
        if tick > 1:
            del flows[:churn]
            first += churn
            flows += [make_flow(i, tick) for i in range(first + n - churn, first + n)]
            for pos in range(tick % step, n - churn, step):
                flows[pos] = moved(flows[pos], first + pos, tick)
        yield Snapshot(seq=tick, taken_at=T0 + tick, interval=1.0, flows=tuple(flows))


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p * (len(ordered) - 1)))]


async def run_size(n: int, ticks: int, scenario: str) -> dict[str, list[float]]:
    snaps = snapshots(n, ticks, scenario)
    app = NetwatchApp(ReplayFeed([]), now=lambda: T0)
    names = ("first", "stats", "view", "apply", "repaint", "wall", "idle", "total", "total_wall")
    times: dict[str, list[float]] = {name: [] for name in names}
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.query_one(FlowsTable)
        rates = RateTracker()
        history = History()
        state = view.ViewState()
        for index, snap in enumerate(snaps):
            w0 = time.perf_counter()
            c0 = time.process_time()
            history.add(snap, rates.update(snap), rates.active, rates.names)
            c1 = time.process_time()
            rows = view.build_rows(snap, state, {}, T0, rates.keys, rates.latest, rates.moved)
            c2 = time.process_time()
            table.apply(rows)
            c3 = time.process_time()
            w3 = time.perf_counter()
            await pilot.pause()
            c4 = time.process_time()
            w4 = time.perf_counter()
            if index == 0:
                times["first"].append((c3 - c2) * 1000)
                continue
            step = {
                "stats": (c1 - c0) * 1000,
                "view": (c2 - c1) * 1000,
                "apply": (c3 - c2) * 1000,
                "repaint": (c4 - c3) * 1000,
                "wall": (w4 - w3) * 1000,
                "total": (c4 - c0) * 1000,
                "total_wall": (w3 - w0) * 1000 + (c4 - c3) * 1000,
            }
            for name, value in step.items():
                times[name].append(value)
            c5 = time.process_time()
            await pilot.pause()
            times["idle"].append((time.process_time() - c5) * 1000)
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
            rows = view.build_rows(snap, state, {}, T0, rates.keys, rates.latest, rates.moved)
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
    parser.add_argument(
        "--scenarios", nargs="+", choices=sorted(SCENARIOS), default=["busy", "quiet"]
    )
    parser.add_argument("--baseline", action="store_true", help="also time clear()+add_row")
    args = parser.parse_args()
    print(f"ticks per size: {args.ticks} (first tick reported separately); times in ms")
    header = f"{'flows':>7} | {'scenario':<8} | {'step':<34} | {'median':>8} | {'p95':>8}"
    print(header)
    print("-" * len(header))
    for n in args.sizes:
        for scenario in args.scenarios:
            times = asyncio.run(run_size(n, args.ticks, scenario))
            rows = [
                ("first apply (all rows new)", times["first"]),
                ("rates + history (stats)", times["stats"]),
                ("view.build_rows", times["view"]),
                ("FlowsTable.apply (by key)", times["apply"]),
                ("repaint (CPU)", times["repaint"]),
                ("TOTAL stats+view+apply+repaint", times["total"]),
                ("total, wall clock for the first 3", times["total_wall"]),
                ("repaint wall, incl. pilot sleep", times["wall"]),
                ("pilot.pause CPU, nothing changed", times["idle"]),
            ]
            for name, values in rows:
                med = statistics.median(values)
                print(
                    f"{n:>7} | {scenario:<8} | {name:<34} | {med:>8.1f} | {pct(values, 0.95):>8.1f}"
                )
        if args.baseline:
            base = asyncio.run(run_baseline(n, max(4, args.ticks // 3)))
            name = "baseline clear+add_row+paint"
            med = statistics.median(base)
            print(f"{n:>7} | {'busy':<8} | {name:<34} | {med:>8.1f} | {pct(base, 0.95):>8.1f}")


if __name__ == "__main__":
    main()
