"""A dashboard attached to the daemon for minutes: does it keep up, and what does it cost?

`netwatch daemon --interval 1` runs (as root, in a private network namespace) beside N held
loopback connections (`bench/daemon.py`'s holders), with `--active` of them sending each
second. One client, the dashboard's own `DaemonFeed` in this process, reads for `--seconds`.
Printed per count: snapshots the client got, its connects (more than one means it was
dropped or had to start again), resyncs where the feed has them, the bytes that reached the
client's socket (counted under the feed), the daemon's CPU % of a core (analyzer plus
collector) and the client's own CPU %. Never asserts.

    python bench/attach.py [--counts 1000,10000] [--seconds 300] [--active 100]
"""

from __future__ import annotations

import argparse
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))
import daemon as bd  # noqa: E402  # bench/daemon.py: the holders and /proc readers

RECEIVED = [0]
_real_recv_into = socket.socket.recv_into
_real_recv = socket.socket.recv


def _count_into(self: socket.socket, buf, *args):  # type: ignore[no-untyped-def]
    n = _real_recv_into(self, buf, *args)
    if self.family == socket.AF_UNIX:
        RECEIVED[0] += n
    return n


def _count(self: socket.socket, *args):  # type: ignore[no-untyped-def]
    data = _real_recv(self, *args)
    if self.family == socket.AF_UNIX:
        RECEIVED[0] += len(data)
    return data


def measure(n: int, seconds: float, active: int) -> dict[str, float]:
    """One count: the daemon, one attached feed for `seconds`, the figures."""
    from netwatch.daemon.client import DaemonFeed

    work = Path(tempfile.mkdtemp(prefix="nwattach-"))
    holders = bd.hold(n, active)
    daemon = None
    try:
        daemon = subprocess.Popen(
            [*bd.PREFIX, sys.executable, "-m", "netwatch", "daemon", "--interval", "1",
             "--db", str(work / "n.db"), "--socket", str(work / "n.sock")],
            cwd=REPO, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while not (work / "n.sock").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(3)
        feed = DaemonFeed(work / "n.sock", max_attempts=1000)
        got = [0]

        def read() -> None:
            for _ in feed.snapshots():
                got[0] += 1

        socket.socket.recv_into = _count_into  # type: ignore[method-assign]
        socket.socket.recv = _count  # type: ignore[method-assign]
        RECEIVED[0] = 0
        reader = threading.Thread(target=read, daemon=True)
        cpu0, mine0, t0 = bd.cpu_seconds(daemon.pid), time.process_time(), time.monotonic()
        reader.start()
        time.sleep(seconds)
        elapsed = time.monotonic() - t0
        cpu = 100 * (bd.cpu_seconds(daemon.pid) - cpu0) / elapsed
        mine = 100 * (time.process_time() - mine0) / elapsed
        feed.close()
        reader.join(10)
        return {
            "snapshots": got[0],
            "ticks": elapsed,
            "connects": feed.connects,
            "resyncs": getattr(feed, "resyncs", float("nan")),
            "bytes": RECEIVED[0],
            "daemon_cpu": cpu,
            "client_cpu": mine,
        }
    finally:
        socket.socket.recv_into = _real_recv_into  # type: ignore[method-assign]
        socket.socket.recv = _real_recv  # type: ignore[method-assign]
        if daemon is not None:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(20)
        bd.release(holders)
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--counts", default="1000,10000")
    ap.add_argument("--seconds", type=float, default=300.0)
    ap.add_argument("--active", type=int, default=100)
    args = ap.parse_args()
    with bd.private_namespace("nwattach"):
        rows = [
            (n, measure(n, args.seconds, min(args.active, n)))
            for n in map(int, args.counts.split(","))
        ]
    print(f"one DaemonFeed attached for {args.seconds:.0f} s; {args.active} connections active")
    print()
    print("| connections | snapshots / s | connects | resyncs | MB to the client | KB per tick "
          "| daemon CPU % | client CPU % |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n, r in rows:
        per_tick = r["bytes"] / max(r["snapshots"], 1) / 1e3
        print(
            f"| {n:,} | {r['snapshots'] / r['ticks']:.2f} | {r['connects']:.0f} "
            f"| {r['resyncs']:.0f} | {r['bytes'] / 1e6:,.1f} | {per_tick:,.1f} "
            f"| {r['daemon_cpu']:.2f} | {r['client_cpu']:.2f} |"
        )


if __name__ == "__main__":
    main()
