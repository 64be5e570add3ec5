"""The privilege split's channel per tick: CPU of both halves and bytes, without a daemon.

The daemon's collector sends its socket table to the analyzer as changes (docs/architecture.md,
section 7). This builds N socket entries (4 owners), then runs ticks through what the channel
does on both sides, in this process: `TableDiff.message` (collector), the codec's framing and
parsing, and `RemoteSockets._decode` (analyzer). Two kinds of tick:
  same entries  - a new table of the very same entries (a full sample where nothing changed)
  K re-read     - K sockets re-read in place with new counters (capture saw their packets)
CPU is `time.process_time` per tick (mean over `--ticks`); bytes are the framed answer. Prints
a table; never asserts (tests/unit/test_collector_channel.py holds the behaviour).

    python bench/channel.py [--sockets 20000] [--reread 200] [--ticks 100]
"""

from __future__ import annotations

import argparse
import gc
import ipaddress
import time
from dataclasses import replace

from netwatch.model import (
    Direction,
    Endpoint,
    FlowKey,
    ProcessRef,
    SocketEntry,
    SocketTable,
    Transport,
)
from netwatch.sources.channel import frame, unframe
from netwatch.sources.collector import TableDiff
from netwatch.sources.remote import RemoteSockets

LOOPBACK = ipaddress.ip_address("127.0.0.1")
OWNERS = tuple(
    ProcessRef(pid=1000 + i, create_time=1.0, name=f"p{i}", exe=f"/usr/bin/p{i}", user="root")
    for i in range(4)
)


def entry(i: int) -> SocketEntry:
    """Socket i: an established loopback connection with counters and an owner."""
    key = FlowKey(
        Transport.TCP, Endpoint(LOOPBACK, 10000 + i % 50000), Endpoint(LOOPBACK, 80 + i // 50000)
    )
    return SocketEntry(
        key=key,
        state="ESTABLISHED",
        direction=Direction.UNKNOWN,
        process=OWNERS[i % len(OWNERS)],
        inode=100000 + i,
        uid=0,
        bytes_sent=0,
        bytes_received=0,
        segs_out=1,
        segs_in=1,
        stamp=i + 1,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sockets", type=int, default=20000)
    ap.add_argument("--reread", type=int, default=200)
    ap.add_argument("--ticks", type=int, default=100)
    args = ap.parse_args()
    n = args.sockets
    entries = [entry(i) for i in range(n)]
    diff, remote = TableDiff(), RemoteSockets(None)  # type: ignore[arg-type]  # no link needed

    def tick(table: SocketTable) -> int:
        wire = frame(diff.message(table))
        remote._decode(unframe(wire))
        return len(wire)

    started = time.process_time()
    first = tick(SocketTable(0.0, tuple(entries)))
    print(f"| {n:,} sockets | ms per tick (both halves) | bytes |")
    print("|---|---:|---:|")
    print(f"| first (full) table | {(time.process_time() - started) * 1000:.1f} | {first:,} |")
    gc.collect()
    stamp, at = n + 1, 0.0
    for label, k in (("same entries", 0), (f"{args.reread:,} re-read", args.reread)):
        cpu, size = 0.0, 0
        for t in range(1, args.ticks + 1):
            for j in range(k):
                i = (j * 97 + t) % n
                e = entries[i]
                stamp += 1
                entries[i] = replace(
                    e,
                    bytes_sent=(e.bytes_sent or 0) + 100,
                    segs_out=(e.segs_out or 0) + 1,
                    stamp=stamp,
                )
            at += 1.0
            table = SocketTable(at, tuple(entries))
            c = time.process_time()
            size += tick(table)
            cpu += time.process_time() - c
        print(f"| {label} | {cpu * 1000 / args.ticks:.2f} | {size // args.ticks:,} |")


if __name__ == "__main__":
    main()
