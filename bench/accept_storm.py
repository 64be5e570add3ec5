"""An accept storm on the daemon's socket: what it costs the daemon and its other clients.

`netwatch daemon --interval 1 --no-capture` runs with a temp store and socket while `--flows`
loopback connections are held (so a snapshot, and the greeting a new client gets, has that
many flows). One well-behaved client stays attached and notes when each snapshot line
arrives. After a warm-up, a storm process connects to the socket and closes at once, as fast
as it can, for `--seconds`. The table gives, per daemon: connects per second the storm
achieved, the daemon's CPU % of one core over the storm, the snapshots the attached client
got out of those the ticks should have sent, the largest gap between two of them, and the
largest delay from a tick's sample (`taken_at`) to its arrival.

`--base REV` runs the same storm first against the daemon as it was at git revision REV
(`git archive` of its `netwatch/` into a temp folder), for a before/after table in one run.

    python bench/accept_storm.py [--seconds 10] [--flows 1000] [--base 4a1311c]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.daemon import cpu_seconds, hold, release  # noqa: E402  # after sys.path
from tests.daemon.harness import STORM  # noqa: E402  # after sys.path

REPO = Path(__file__).resolve().parent.parent


class Watcher:
    """The well-behaved client: reads every line, notes arrival time and the tick's time."""

    def __init__(self, path: Path) -> None:
        self.arrivals: list[tuple[float, float]] = []
        """(wall time received, taken_at of the snapshot) per line."""
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.connect(str(path))
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        with self._sock.makefile("rb") as lines:
            for line in lines:
                head = json.loads(line)
                self.arrivals.append((time.time(), float(head["taken_at"])))

    def between(self, start: float, end: float) -> list[tuple[float, float]]:
        """Lines that arrived in [start, end] (wall time)."""
        return [a for a in self.arrivals if start <= a[0] <= end]

    def close(self) -> None:
        """Stop reading."""
        self._sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(5)
        self._sock.close()


def wait_for_socket(path: Path, timeout: float = 30) -> None:
    """Until the daemon's socket exists (it is bound before the first tick)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"daemon did not create {path}")
        time.sleep(0.1)


def run_storm(code: Path, seconds: float, warmup: float) -> dict[str, float]:
    """One daemon from the package in `code`, one watcher, one storm; the measured row."""
    work = Path(tempfile.mkdtemp(prefix="nwstorm-"))
    sock = work / "n.sock"
    env = dict(os.environ, PYTHONPATH=str(code))
    daemon = subprocess.Popen(
        [sys.executable, "-m", "netwatch", "daemon", "--interval", "1", "--no-capture",
         "--db", str(work / "n.db"), "--socket", str(sock)],
        cwd=code, env=env, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for_socket(sock)
        watcher = Watcher(sock)
        time.sleep(warmup)
        start, cpu0 = time.time(), cpu_seconds(daemon.pid)
        storm = subprocess.run(
            [sys.executable, "-c", STORM, str(sock), str(seconds)],
            capture_output=True, text=True, timeout=seconds + 30, check=True,
        )  # fmt: skip
        end, cpu1 = time.time(), cpu_seconds(daemon.pid)
        time.sleep(1.5)  # the last tick's line may still be on its way
        watcher.close()
        got = watcher.between(start, end)
        gaps = [b[0] - a[0] for a, b in zip(got, got[1:], strict=False)]
        done, failed = (int(x) for x in storm.stdout.split())
        return {
            "connects/s": done / (end - start),
            "connect fails": failed,
            "cpu %": 100 * (cpu1 - cpu0) / (end - start),
            "snapshots": len(got),
            "expected": int(end - start),
            "max gap s": max(gaps, default=float("nan")),
            "max delay s": max((a - t for a, t in got), default=float("nan")),
        }
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(30)
        shutil.rmtree(work, ignore_errors=True)


def checkout(rev: str, into: Path) -> Path:
    """The `netwatch/` package of git revision `rev`, extracted under `into`."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", rev, "netwatch"], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def main() -> None:
    """Parse flags, run the storm against each daemon, print the table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--flows", type=int, default=1000)
    ap.add_argument("--base", metavar="REV", help="also run the daemon of git revision REV")
    args = ap.parse_args()
    holders = hold(args.flows) if args.flows else []
    old = Path(tempfile.mkdtemp(prefix="nwstorm-base-"))
    try:
        daemons = [("this tree", REPO)]
        if args.base:
            daemons.insert(0, (args.base, checkout(args.base, old)))
        rows = [(name, run_storm(code, args.seconds, args.warmup)) for name, code in daemons]
    finally:
        release(holders)
        shutil.rmtree(old, ignore_errors=True)
    cols = list(rows[0][1])
    print(f"accept storm, {args.seconds:.0f} s, {args.flows} held connections (2 sockets each)")
    print(f"{'daemon':<12}" + "".join(f"{c:>15}" for c in cols))
    for name, row in rows:
        print(f"{name:<12}" + "".join(_cell(row[c]) for c in cols))


def _cell(value: float) -> str:
    """A table cell: counts as whole numbers, measures with two decimals."""
    return f"{value:>15d}" if isinstance(value, int) else f"{value:>15.2f}"


if __name__ == "__main__":
    main()
