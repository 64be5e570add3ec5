"""Daemon cost at 1 Hz: CPU % of one core and RSS with 1,000 and 10,000 loopback connections.

Two holder processes open N loopback TCP connections (both ends, 2N sockets) and keep
them for the run; `netwatch daemon --interval 1` runs with a temp store and socket for
`--seconds` (60 by default) after a short warm-up. CPU is utime+stime from /proc over the
window; RSS is the peak of VmRSS sampled every second; both count the daemon's children too
(as root the daemon is an analyzer and its forked collector). RSS summed over the two
processes counts the pages they share since the fork (the interpreter, modules imported
before it) twice, so PSS (`/proc/<pid>/smaps_rollup`: each shared page divided among the
processes mapping it) is reported beside it: the sum of PSS is the memory the daemon holds.
A second window (`--client-seconds`) has one client attached that reads every snapshot, as
the dashboard does. For comparison, `ss -tanp` (the native tool, also listing processes) is
run once per second for 10 s over the same sockets.

Each count runs in three modes: all connections idle; `--active` of them (100 by default)
sending 100 bytes every second, so capture sees them and the daemon re-reads their sockets
between full samples; and idle with `--full-sample-every 0` (every socket listed every
tick, as before that option existed).
As root everything runs in a private network namespace (`--host-namespace` to not), so the
daemon counts only these sockets. Everything is killed and removed at the end.

    python bench/daemon.py [--seconds 60] [--client-seconds 30] [--counts 1000,10000]
        [--active 100]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TICK = os.sysconf("SC_CLK_TCK")
PREFIX: list[str] = []
"""`ip netns exec NS` when the run happens in a private namespace (only our sockets)."""

# Two processes hold the two ends (one process may not hold 2 x 10,000 fds under a 20,000
# hard limit): `server N` accepts N connections, `client PORT N` opens them.
HOLDER = r"""
import resource, socket, sys
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
if sys.argv[1] == "server":
    srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(4096)
    sys.stdout.write(f"{srv.getsockname()[1]}\n"); sys.stdout.flush()
    held = [srv.accept()[0] for _ in range(int(sys.argv[2]))]
else:
    held = [socket.create_connection(("127.0.0.1", int(sys.argv[2])))
            for _ in range(int(sys.argv[3]))]
    active = held[: int(sys.argv[4])]
    if active:  # these send 100 bytes a second (the server never reads: 6 KB a minute)
        import threading, time
        def poke():
            while True:
                for c in active:
                    c.send(b"x" * 100)
                time.sleep(1)
        threading.Thread(target=poke, daemon=True).start()
# Closing resets (linger 0): no TIME_WAIT sockets outlive a run and crowd the next one.
for c in held:
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
sys.stdout.write("ready\n"); sys.stdout.flush()
sys.stdin.read()
"""


@contextlib.contextmanager
def private_namespace(prefix: str, wanted: bool = True) -> Iterator[bool]:
    """As root (and `wanted`): a network namespace of our own with loopback up, which
    `PREFIX` then runs every command in, removed at the end. Yields whether it is in use
    (not as another user: everything then runs in this namespace)."""
    ns = f"{prefix}{os.getpid()}" if wanted and os.geteuid() == 0 else None
    if ns is not None:
        subprocess.run(["ip", "netns", "add", ns], check=True)
        subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"], check=True)
        PREFIX[:] = ["ip", "netns", "exec", ns]
    try:
        yield ns is not None
    finally:
        if ns is not None:
            PREFIX.clear()
            subprocess.run(["ip", "netns", "del", ns], check=False)


def start_holder(*args: str) -> subprocess.Popen[bytes]:
    """One holder process with piped stdin (closing it ends the holder) and stdout."""
    return subprocess.Popen(
        [*PREFIX, sys.executable, "-c", HOLDER, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )


def hold(n: int, active: int = 0) -> list[subprocess.Popen[bytes]]:
    """Start the two holders and return once all n connections are established."""
    server = start_holder("server", str(n))
    port = server.stdout.readline().decode().strip() if server.stdout else ""
    client = start_holder("client", port, str(n), str(active))
    for proc in (client, server):
        if proc.stdout is None or proc.stdout.readline() != b"ready\n":
            release([server, client])
            raise SystemExit("connection holders failed (fd limit?)")
    return [server, client]


def release(holders: list[subprocess.Popen[bytes]]) -> None:
    """Kill the holders (their connections close with them)."""
    for proc in holders:
        proc.kill()
        proc.wait(10)


def family(pid: int) -> list[int]:
    """`pid` and its children: the daemon's analyzer and, as root, its forked collector."""
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        kids = []
    return [pid, *map(int, kids)]


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` and its children (both halves of a split daemon)."""
    total = 0.0
    for p in family(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / TICK
    return total


def rss_mb(pid: int) -> float:
    """VmRSS of `pid` and its children, MB."""
    total = 0.0
    for p in family(pid):
        try:
            lines = Path(f"/proc/{p}/status").read_text().splitlines()
        except OSError:
            continue
        total += sum(int(ln.split()[1]) / 1024 for ln in lines if ln.startswith("VmRSS:"))
    return total


def pss_mb(pid: int) -> float:
    """Pss of `pid` and its children from smaps_rollup, MB (shared pages counted once)."""
    total = 0.0
    for p in family(pid):
        try:
            lines = Path(f"/proc/{p}/smaps_rollup").read_text().splitlines()
        except OSError:
            continue
        total += sum(int(ln.split()[1]) / 1024 for ln in lines if ln.startswith("Pss:"))
    return total


def measure_daemon(
    n: int, seconds: float, warmup: float, client_seconds: float, active: int = 0,
    extra: tuple[str, ...] = (),
) -> tuple[float, float, float, float, int, float, float, float]:  # fmt: skip
    """(cpu %, peak RSS MB, peak PSS MB (both without a client), store MB, sockets seen,
    cpu % and peak RSS MB with a client, and the CPU % of that client: this process's
    reader thread decoding every snapshot)."""
    work = Path(tempfile.mkdtemp(prefix="nwbench-"))
    holders = hold(n, active)
    daemon = None
    try:
        daemon = subprocess.Popen(
            [*PREFIX, sys.executable, "-m", "netwatch", "daemon", "--interval", "1",
             "--db", str(work / "n.db"), "--socket", str(work / "n.sock"), *extra],
            cwd=REPO, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(warmup)
        cpu, peak = window(daemon.pid, seconds)
        pss = PEAK_PSS.pop(daemon.pid, float("nan"))
        db_mb = sum(f.stat().st_size for f in work.glob("n.db*")) / 1e6  # with -wal, -shm
        seen = sockets_seen(work / "n.sock")
        with_client = client_peak = feed = float("nan")
        if client_seconds > 0:
            with attached(work / "n.sock"):
                time.sleep(2)  # the greeting (a full encode) is start-up, not steady state
                mine = time.process_time()
                with_client, client_peak = window(daemon.pid, client_seconds)
                feed = 100 * (time.process_time() - mine) / client_seconds
        return cpu, peak, pss, db_mb, seen, with_client, client_peak, feed
    finally:
        if daemon is not None:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(10)
        release(holders)
        shutil.rmtree(work, ignore_errors=True)


PEAK_PSS: dict[int, float] = {}
"""Peak PSS MB seen by `window`, by daemon pid (read by `measure_daemon`)."""


def window(pid: int, seconds: float) -> tuple[float, float]:
    """CPU % of one core and peak RSS MB of `pid` over `seconds` (peak PSS in `PEAK_PSS`)."""
    start_cpu, start = cpu_seconds(pid), time.monotonic()
    peak = 0.0
    while time.monotonic() - start < seconds:
        peak = max(peak, rss_mb(pid))
        PEAK_PSS[pid] = max(PEAK_PSS.get(pid, 0.0), pss_mb(pid))
        time.sleep(1)
    return 100 * (cpu_seconds(pid) - start_cpu) / (time.monotonic() - start), peak


@contextlib.contextmanager
def attached(sock: Path) -> Iterator[None]:
    """A dashboard-like client reading every snapshot from the daemon while inside."""
    sys.path.insert(0, str(REPO))
    from netwatch.daemon.client import DaemonFeed

    feed = DaemonFeed(sock, max_attempts=3)
    reader = threading.Thread(target=lambda: sum(1 for _ in feed.snapshots()), daemon=True)
    reader.start()
    try:
        yield
    finally:
        feed.close()
        reader.join(5)


def measure_ss(n: int, runs: int = 10) -> float:
    """CPU % of one core for `ss -tanp` once a second, with n connections held."""
    holders = hold(n)
    try:
        # One shell runs ss `runs` times; the same loop with `:` is subtracted, so the cost
        # of entering the namespace and of the shell is not counted.
        def loop(cmd: str) -> float:
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            script = f"for i in $(seq {runs}); do {cmd}; done"
            subprocess.run([*PREFIX, "sh", "-c", script], stdout=subprocess.DEVNULL, check=True)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)

        cpu = loop("ss -tanp") - loop(":")
        return 100 * max(cpu, 0.0) / runs  # one run per second
    finally:
        release(holders)


def sockets_seen(sock: Path) -> int:
    """How many sockets the daemon's latest snapshot counted (all in its namespace)."""
    sys.path.insert(0, str(REPO))
    from netwatch.daemon.client import DaemonFeed

    feed = DaemonFeed(sock, max_attempts=3)
    seen: list[int] = []
    reader = threading.Thread(
        target=lambda: seen.extend(s.counters.sockets for s in feed.snapshots() if not seen)
    )
    reader.start()
    deadline = time.monotonic() + 30
    while not seen and reader.is_alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    feed.close()
    reader.join(5)
    return seen[0] if seen else -1


def stage_breakdown(n: int, ticks: int = 10) -> dict[str, float]:
    """CPU ms per tick of each stage, in this process, with n connections held.

    Each stage runs `ticks` times on the same input, as on a quiet machine where no socket
    changed: the steady state, where unchanged sockets reuse last tick's objects (median per
    call). The first (cold) pass of each stage is timed on its own row: everything new, as
    on the first tick.
    """
    sys.path.insert(0, str(REPO))
    import socket as _socket

    from netwatch import codec
    from netwatch.clock import SystemClock
    from netwatch.detect.engine import RuleEngine
    from netwatch.enrich.enricher import build_enricher
    from netwatch.flows.socket_flows import SocketFlows
    from netwatch.model import Snapshot
    from netwatch.sources import netlink
    from netwatch.sources.sockets import SocketSampler
    from netwatch.store import Store, StoredFirstSeen
    from netwatch.stream import StreamEncoder

    holders = hold(n)
    work = Path(tempfile.mkdtemp(prefix="nwbench-"))
    try:
        time.sleep(2)  # let the connection set-up settle
        store = Store(work / "n.db")
        sampler = SocketSampler(clock=SystemClock())
        enricher = build_enricher()
        detector = RuleEngine(first_seen=StoredFirstSeen(store))
        socket_flows = SocketFlows()
        encoder = StreamEncoder()
        diag = netlink.DiagSocket()
        out: dict[str, float] = {}

        def timed(name: str, fn):  # type: ignore[no-untyped-def]
            t = time.process_time()
            result = fn()
            out[f"{name} [first tick]"] = (time.process_time() - t) * 1000
            per_call = []
            for _ in range(ticks):
                t = time.process_time()
                result = fn()
                per_call.append((time.process_time() - t) * 1000)
            # The median: kernel work for sockets closing elsewhere (the previous run's
            # holders) is charged to whatever runs, in bursts.
            out[name] = statistics.median(per_call)
            return result

        timed("kernel TCP+UDP dump alone (netlink, parsed)", lambda: (
            diag.dump_tcp(), diag.dump(_socket.AF_INET, _socket.IPPROTO_UDP),
            diag.dump(_socket.AF_INET6, _socket.IPPROTO_UDP)))  # fmt: skip
        table = timed("sample sockets + processes", sampler.sample)
        flows = timed("flows from sockets", lambda: socket_flows.flows(table, time.time()))
        enriched = timed(
            "enrich", lambda: socket_flows.enrich(flows, enricher.enrich, enricher.stable)
        )
        timed("detect (rule pack)", lambda: detector.evaluate(enriched, time.time()))
        now = time.time()
        rows = [(ef, now, now) for ef in enriched if ef.flow.key.remote is not None]
        t = time.process_time()
        store.save_flows(rows)
        out["store flow summaries (per 30 s flush, amortised)"] = (
            (time.process_time() - t) * 1000 / 30
        )
        snap = Snapshot(seq=1, taken_at=now, interval=1.0, flows=enriched)
        timed(
            "encode the tick's delta for socket clients", lambda: codec.frame(encoder.delta(snap))
        )
        timed("encode a state for a new client", lambda: codec.frame(encoder.state()))
        out["state for a new client [bytes]"] = float(len(codec.frame(encoder.state())))
        out["quiet tick's delta [bytes]"] = float(len(codec.frame(encoder.delta(snap))))
        out["schema-1 whole-snapshot line, as sent before [bytes]"] = float(
            len(codec.dumps(snap).encode()) + 1
        )
        out["sockets"] = float(len(table.entries))
        diag.close()
        store.close()
        return out
    finally:
        release(holders)
        shutil.rmtree(work, ignore_errors=True)


def stages_in_namespace(n: int) -> dict[str, float]:
    """Run `stage_breakdown` in the bench namespace (a child of this script) and read it."""
    if not PREFIX:
        return stage_breakdown(n)
    res = subprocess.run(
        [*PREFIX, sys.executable, __file__, "--stages-only", str(n)],
        capture_output=True, text=True, check=True, cwd=REPO,
    )  # fmt: skip
    return dict(json.loads(res.stdout))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--counts", default="1000,10000")
    ap.add_argument("--active", type=int, default=100, help="connections sending each second")
    ap.add_argument(
        "--client-seconds",
        type=float,
        default=30.0,
        help="a second window with one client reading every snapshot (0: skip)",
    )
    ap.add_argument(
        "--host-namespace",
        action="store_true",
        help="run in this namespace (the daemon then also counts every other socket here)",
    )
    ap.add_argument("--stages-only", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.stages_only:
        print(json.dumps(stage_breakdown(args.stages_only)))
        return
    with private_namespace("nwbench", wanted=not args.host_namespace):
        run(args)


def run(args: argparse.Namespace) -> None:
    """Measure every count and print the tables."""
    rows = []
    stages = {}
    counts = [int(x) for x in args.counts.split(",")]
    modes = (
        ("idle", 0, ()),
        (f"{args.active:,} active", args.active, ()),
        ("idle, full sample every tick", 0, ("--full-sample-every", "0")),
    )
    for n in counts:
        for mode, active, extra in modes:
            cpu, rss, pss, db, seen, client, client_rss, feed = measure_daemon(
                n, args.seconds, args.warmup, args.client_seconds, min(active, n), extra
            )
            rows.append((n, mode, seen, cpu, client, feed, rss, pss, client_rss, db))
        ss = measure_ss(n) if shutil.which("ss") else float("nan")
        nan = float("nan")
        rows.append((n, "`ss -tanp` once a second", n * 2, ss, nan, nan, 0, 0, 0, 0))
        stages[n] = stages_in_namespace(n)
    where = "a private network namespace" if PREFIX else "the host namespace"
    print(
        f"netwatch daemon at 1 Hz over {args.seconds:.0f} s in {where} "
        "(loopback connections, 2 sockets each; a full socket sample every 5 s between "
        "re-reads of active connections, unless said)"
    )
    print()
    print(
        "| connections | mode | sockets seen | CPU % of a core | same, 1 client attached "
        "| the client's own CPU % | peak RSS MB | peak PSS MB | RSS, 1 client | store MB |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n, mode, seen, cpu, client, feed, rss, pss, crss, db in rows:
        print(
            f"| {n:,} | {mode} | {seen:,} | {cpu:.2f} | {client:.2f} | {feed:.2f} | {rss:.1f} "
            f"| {pss:.1f} | {crss:.1f} | {db:.2f} |"
        )
    print()
    print("RSS and PSS are both processes summed; PSS counts pages they share once.")
    print()
    print("targets at 1,000 connections: <= 0.5 % of a core, <= 100 MB")
    print()
    print(
        "CPU ms per tick by stage (in-process, same composition as the daemon; steady state "
        "with no socket changed, and [first tick] with everything new)"
    )
    print()
    print("| stage | " + " | ".join(f"{n:,} conns" for n in counts) + " |")
    print("|---|" + "---:|" * len(counts))
    for name in stages[counts[0]]:
        if name == "sockets" or name.endswith("[bytes]"):
            continue
        print(f"| {name} | " + " | ".join(f"{stages[n][name]:.1f}" for n in counts) + " |")
    print()
    print("Bytes a client is sent (the delta protocol, netwatch.stream), from the same sample")
    print()
    print("| record | " + " | ".join(f"{n:,} conns" for n in counts) + " |")
    print("|---|" + "---:|" * len(counts))
    for name in stages[counts[0]]:
        if name.endswith("[bytes]"):
            row = " | ".join(f"{stages[n][name]:,.0f}" for n in counts)
            print(f"| {name[: -len(' [bytes]')]} | {row} |")


if __name__ == "__main__":
    main()
