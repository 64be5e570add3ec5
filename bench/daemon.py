"""Daemon cost at 1 Hz: CPU % of one core and RSS with 1,000 and 10,000 loopback connections.

A separate holder process opens N loopback TCP connections (both ends, 2N sockets) and keeps
them for the run; `netwatch daemon --interval 1` runs with a temp store and socket for
`--seconds` (60 by default) after a short warm-up. CPU is utime+stime from /proc over the
window; RSS is the peak of VmRSS sampled every second. For comparison, `ss -tanp` (the native
tool, also listing processes) is run once per second for 10 s over the same sockets.
Everything is killed and removed at the end. Run as root (raises the fd limit).

    python bench/daemon.py [--seconds 60] [--counts 1000,10000]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TICK = os.sysconf("SC_CLK_TCK")

HOLDER = r"""
import resource, socket, sys
n = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_NOFILE, (2 * n + 100, 2 * n + 100))
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(4096)
port = srv.getsockname()[1]
held = []
for _ in range(n):
    c = socket.create_connection(("127.0.0.1", port))
    a, _ = srv.accept()
    held += [c, a]
sys.stdout.write("ready\n"); sys.stdout.flush()
sys.stdin.read()
"""


def wait_ready(holder: subprocess.Popen[bytes]) -> None:
    """Block until the holder has opened every connection."""
    if holder.stdout is None or holder.stdout.readline() != b"ready\n":
        raise SystemExit("connection holder failed (fd limit?)")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def measure_daemon(n: int, seconds: float, warmup: float) -> tuple[float, float, float]:
    """(cpu %, peak RSS MB, mean store size MB) of the daemon holding n connections."""
    work = Path(tempfile.mkdtemp(prefix="nwbench-"))
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(n)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    daemon = None
    try:
        wait_ready(holder)
        daemon = subprocess.Popen(
            [sys.executable, "-m", "netwatch", "daemon", "--interval", "1",
             "--db", str(work / "n.db"), "--socket", str(work / "n.sock")],
            cwd=REPO, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(warmup)
        start_cpu, start = cpu_seconds(daemon.pid), time.monotonic()
        peak = 0.0
        while time.monotonic() - start < seconds:
            peak = max(peak, rss_mb(daemon.pid))
            time.sleep(1)
        cpu = cpu_seconds(daemon.pid) - start_cpu
        wall = time.monotonic() - start
        db_mb = (work / "n.db").stat().st_size / 1e6
        return 100 * cpu / wall, peak, db_mb
    finally:
        if daemon is not None:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(10)
        holder.kill()
        holder.wait(10)
        shutil.rmtree(work, ignore_errors=True)


def measure_ss(n: int, runs: int = 10) -> float:
    """CPU % of one core for `ss -tanp` once a second, with n connections held."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(n)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        wait_ready(holder)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        for _ in range(runs):
            subprocess.run(["ss", "-tanp"], stdout=subprocess.DEVNULL, check=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return 100 * cpu / runs  # one run per second
    finally:
        holder.kill()
        holder.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--counts", default="1000,10000")
    args = ap.parse_args()
    rows = []
    for n in (int(x) for x in args.counts.split(",")):
        cpu, rss, db = measure_daemon(n, args.seconds, args.warmup)
        ss = measure_ss(n) if shutil.which("ss") else float("nan")
        rows.append((n, cpu, rss, db, ss))
    print(
        f"netwatch daemon at 1 Hz over {args.seconds:.0f} s (loopback connections, 2 sockets each)"
    )
    print()
    print(
        "| connections | daemon CPU % of a core | daemon peak RSS MB | store MB "
        "| ss -tanp CPU % at 1 Hz |"
    )
    print("|---:|---:|---:|---:|---:|")
    for n, cpu, rss, db, ss in rows:
        print(f"| {n:,} | {cpu:.2f} | {rss:.1f} | {db:.2f} | {ss:.2f} |")
    print()
    print("targets at 1,000 connections: <= 0.5 % of a core, <= 100 MB")


if __name__ == "__main__":
    main()
