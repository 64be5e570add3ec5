"""The usage history at 1,000 busy connections: bytes per row, growth per day, a 30-day store
and how fast `netwatch history` answers on it.

Worst case for the store: each of `--connections` conversations has its own remote address
(so its own dims row) and moves bytes every minute, so every minute writes one row per
connection. The fill goes through the daemon's write path (`Store.save_flows` with the rows
`store.rollup.Rollups` makes, which adds each to its hour's and day's rows: one transaction
per minute here, per flush in the daemon) for one day of minute rows, measures the file,
drops that day's minute rows with the pruner (`store.retention.prune`, as the daemon does
after `hourly_after`), measures again, writes the days before as hour rows and one more day
of minute rows after them (the store as the daemon keeps `--days` days: the last day per
minute). Then it times the queries `netwatch history` runs
(`store.sqlite.read_usage`, each on a fresh read-only connection, as the command does).
`--tick-flows N` also times `Rollups.add` per tick in CPU time at N numbered flows, busy
(every flow moved) and quiet (5 % moved), as the daemon calls it every tick.

    python bench/history.py [--connections 1000] [--days 30] [--db FILE] [--tick-flows 10000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from netwatch.store import Retention, Store, prune  # noqa: E402  # after sys.path
from netwatch.store.rollup import (  # noqa: E402  # after sys.path
    HOUR,
    SPAN,
    Dims,
    UsageQuery,  # noqa: E402  # after sys.path
    UsageRow,
)
from netwatch.store.sqlite import read_usage  # noqa: E402  # after sys.path

COUNTRIES = ("US", "DE", "JP", "NL", "FR", "GB", "SE", "CH", "CA", "SG", "RU", "BR")


def dims(i: int) -> Dims:
    """Connection `i`'s who-to-whom: 40 programs, 1 remote each, 12 countries, 60 ASNs."""
    prog = f"prog{i % 40}"
    asn = 64500 + i % 60
    return (
        prog, f"/usr/bin/{prog}", f"198.{18 + i // 65536}.{i // 256 % 256}.{i % 256}",
        COUNTRIES[i % len(COUNTRIES)], asn, f"AS{asn} Example", None, "tcp",
        "tls" if i % 3 else None,
    )  # fmt: skip


def rows_at(bucket: int, span: int, n: int) -> list[UsageRow]:
    scale = span // SPAN
    return [
        UsageRow(bucket, span, dims(i), 20_000 * scale + i, 900_000 * scale + i, i % 2)
        for i in range(n)
    ]


def fill(path: Path, n: int, days: int, now: int) -> dict[str, float]:
    """Write the store; returns the measured sizes."""
    store = Store(path)
    out: dict[str, float] = {}
    t = time.perf_counter()
    start = now - 86400
    for m in range(1440):
        store.save_flows([], rows_at(start + m * SPAN, SPAN, n))
    out["fill_minutes_s"] = time.perf_counter() - t
    conn = store.connection_for_pruning()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    day_rows = conn.execute("SELECT count(*) FROM usage").fetchone()[0]
    out["rows_of_one_day"] = day_rows  # minute rows with their hour and day rows
    out["day_of_minutes_bytes"] = path.stat().st_size
    out["bytes_per_row"] = path.stat().st_size / day_rows
    t = time.perf_counter()
    prune(store, Retention(max_age=None, max_bytes=None, hourly_after=0.0), now)
    out["drop_minutes_s"] = time.perf_counter() - t
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    out["day_of_hours_bytes"] = path.stat().st_size
    hour_rows = conn.execute("SELECT count(*) FROM usage").fetchone()[0]
    # The days before, per hour, and one more day of minute rows after: the store as the
    # daemon keeps `days` days at the default `hourly_after` (the last day per minute).
    for k in range(1, 24 * (days - 2) + 1):
        store.save_flows([], rows_at(start - k * HOUR, HOUR, n))
    for m in range(1440):
        store.save_flows([], rows_at(now + m * SPAN, SPAN, n))
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    total = conn.execute("SELECT count(*) FROM usage").fetchone()[0]
    out["hour_rows_per_day"] = hour_rows
    out["rows_30d"] = total
    out["store_30d_bytes"] = path.stat().st_size
    store.close()
    return out


def tick_cost(n: int, share: float, ticks: int = 50) -> float:
    """Milliseconds of CPU per `Rollups.add` at `n` flows of which `share` move each tick,
    with the tick's versions handed in (the daemon reads them once for the flow summaries
    and the history)."""
    from dataclasses import replace

    from netwatch.flows.serials import fresh_rev, new_serial
    from netwatch.model.versions import versions
    from netwatch.store.rollup import Rollups
    from tests.builders import make_flow, make_process

    procs = [make_process(f"prog{i}") for i in range(40)]
    flows = []
    for i in range(n):
        ef = make_flow(
            process=procs[i % 40], local_port=10_000 + i % 50_000,
            remote_ip=f"198.{18 + i // 65536}.{i // 256 % 256}.{i % 256}",
        )  # fmt: skip
        f = replace(ef.flow, serial=new_serial(), rev_facts=fresh_rev(), rev_traffic=fresh_rev())
        flows.append(replace(ef, flow=f))
    book = Rollups()
    book.add(flows, 0.0)
    step = max(1, round(1 / share))
    took = 0.0
    for t in range(1, ticks + 1):
        for i in range(t % step, n, step):
            f = flows[i].flow
            moved = replace(f, bytes_sent=(f.bytes_sent or 0) + 1500, rev_traffic=fresh_rev())
            flows[i] = replace(flows[i], flow=moved)
        tick = versions(flows)
        start = time.process_time()
        book.add(flows, float(t), tick)
        took += time.process_time() - start
    return took / ticks * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--connections", type=int, default=1000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--db", type=Path, help="keep the store here (default: a temp folder)")
    ap.add_argument("--tick-flows", type=int, default=0, help="also time Rollups.add per tick")
    args = ap.parse_args()
    if args.tick_flows:
        for name, share in (("busy", 1.0), ("quiet", 0.05)):
            ms = tick_cost(args.tick_flows, share)
            print(f"Rollups.add {name:5} at {args.tick_flows} flows  {ms:6.2f} ms CPU per tick")
    now = 1_780_000_000 // HOUR * HOUR
    with tempfile.TemporaryDirectory() as tmp:
        path = args.db or Path(tmp) / "history.db"
        if path.exists():
            sys.exit(f"{path} exists")
        got = fill(path, args.connections, args.days, now)
        for k, v in got.items():
            print(f"{k:24} {v:,.1f}")
        print(f"{'growth_per_day_minutes':24} {got['day_of_minutes_bytes'] / 2**20:,.1f} MiB")
        print(f"{'growth_per_day_hours':24} {got['day_of_hours_bytes'] / 2**20:,.1f} MiB")
        print(f"{'store_30d':24} {got['store_30d_bytes'] / 2**20:,.1f} MiB")
        end = now + 86400
        queries = {
            "30d --by process": UsageQuery(by="process"),
            "30d --by country": UsageQuery(by="country"),
            "30d --by remote": UsageQuery(by="remote"),
            "30d --by day": UsageQuery(by="day"),
            "30d --by hour --process prog7": UsageQuery(by="hour", process="prog7"),
            "7d --by asn": UsageQuery(by="asn", since=end - 7 * 86400),
            "1d --by process": UsageQuery(by="process", since=end - 86400),
            "30d-1234s..-777s --by process": UsageQuery(
                by="process", since=end - 30 * 86400 + 1234, until=end - 777
            ),
            "23h59m --by country": UsageQuery(by="country", since=end - 86400 + 60),
            "1h --by process": UsageQuery(by="process", since=end - 3600),
        }
        for name, q in queries.items():
            t = time.perf_counter()
            ans = read_usage(path, q)
            took = time.perf_counter() - t
            print(f"query {name:32} {took * 1000:8.0f} ms  {len(ans.totals)} groups")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
