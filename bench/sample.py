"""How fast is one socket sample? netwatch vs psutil.net_connections() vs `ss -tanpi`.

For 100 / 1,000 / 10,000 established loopback TCP connections (a listener process and a
client process, so 2N sockets plus the listener), this prints, as ms and as a ratio to `ss`:

* netwatch: `SocketSampler.sample()` in this process, warm (the long-running case: the
  engine keeps one sampler), with attribution to processes and tcp_info byte counters;
  a cold sample (a new sampler: full /proc scan, as `netwatch snapshot` does) on its own row;
* netwatch engine tick: the sample plus turning sockets into flows (what `snapshot` runs);
* psutil.net_connections("tcp") alone (attribution, no byte counters);
* `ss -tanpi` run as a command (attribution and tcp_info), output to /dev/null.

netwatch's rows list this namespace's sockets only, as `ss` and psutil do (other network
namespaces, containers, are measured by bench/namespaces.py).

Wall time suffers when other work shares the CPUs, so each row also gives the median CPU
time per run (user + kernel; for `ss`, the child process's). Then netwatch's CPU use at one
sample per second with 1,000 connections (each step in its own process), next to the
netlink dumps alone (the floor).
Usage: python bench/sample.py [--sizes 100,1000,10000] [--repeat 15] [--cpu-seconds 30]
"""

from __future__ import annotations

import argparse
import json
import resource
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil  # noqa: E402  # after the checkout is on sys.path

from netwatch.clock import SystemClock  # noqa: E402
from netwatch.pipeline.engine import Engine  # noqa: E402
from netwatch.sources import netlink  # noqa: E402
from netwatch.sources.sockets import SocketSampler  # noqa: E402

# Every socket lingers 0: closing resets it, so no TIME_WAIT sockets outlive a run and skew
# the next one.
SERVER = r"""
import resource, socket, struct, sys
n = int(sys.argv[1])
LINGER0 = struct.pack("ii", 1, 0)
resource.setrlimit(resource.RLIMIT_NOFILE, (n + 256, n + 256))
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0)); s.listen(4096)
print(s.getsockname()[1], flush=True)
s.settimeout(60)
conns = [s.accept()[0] for _ in range(n)]
for c in conns:
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER0)
print("ready", flush=True)
sys.stdin.read()
"""
CLIENT = r"""
import resource, socket, struct, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
LINGER0 = struct.pack("ii", 1, 0)
resource.setrlimit(resource.RLIMIT_NOFILE, (n + 256, n + 256))
conns = []
for _ in range(n):
    c = socket.create_connection(("127.0.0.1", port), timeout=60)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER0)
    c.sendall(b"x" * 100)
    conns.append(c)
print("ready", flush=True)
sys.stdin.read()
"""


class Connections:
    """N established loopback connections between two helper processes; closed on exit."""

    def __init__(self, n: int) -> None:
        self.procs: list[subprocess.Popen[str]] = []
        server = self._start([SERVER, str(n)])
        port = _line(server)
        client = self._start([CLIENT, port, str(n)])
        for proc in (client, server):
            if _line(proc) != "ready":
                self.close()
                raise SystemExit(f"helper failed to set up {n} connections")

    def _start(self, args: list[str]) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-c", *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.procs:
            if proc.stdin is not None:
                proc.stdin.close()
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


Timing = tuple[list[float], float]
"""Wall ms of each run, and the median CPU ms (user + kernel) per run."""


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def _line(proc: subprocess.Popen[str]) -> str:
    return "" if proc.stdout is None else proc.stdout.readline().strip()


def timed(fn: Callable[[], object], repeat: int, who: int = resource.RUSAGE_SELF) -> Timing:
    """Run `fn` `repeat` times; CPU is this process's, or its children's for commands."""
    walls, cpus = [], []
    for _ in range(repeat):
        c0, t0 = _cpu(who), time.perf_counter()
        fn()
        walls.append((time.perf_counter() - t0) * 1000)
        cpus.append((_cpu(who) - c0) * 1000)
    return walls, statistics.median(cpus)


def ss() -> None:
    subprocess.run(["ss", "-tanpi"], stdout=subprocess.DEVNULL, check=True)


def row(name: str, timing: Timing, ss: Timing) -> str:
    times, cpu = timing
    med, ss_med = statistics.median(times), statistics.median(ss[0])
    spread = f"{min(times):8.1f} - {max(times):8.1f}"
    return (
        f"  {name:<38} {med:9.1f} {spread:>21} {med / ss_med:7.2f}x {cpu:9.1f} {cpu / ss[1]:7.2f}x"
    )


def measure(n: int, repeat: int) -> None:
    conns = Connections(n)
    try:
        sampler = SocketSampler(namespaces=False)
        table = sampler.sample()  # warms the owner cache; the cold cost is measured below
        sockets = len(table.entries)
        with_counters = sum(1 for e in table.entries if e.bytes_sent is not None)
        attributed = sum(1 for e in table.entries if e.process is not None)
        warm = timed(sampler.sample, repeat)
        cold = timed(lambda: SocketSampler(namespaces=False).sample(), max(3, repeat // 5))
        engine = Engine(sampler, SystemClock())
        ticks = timed(engine.tick, repeat)
        ps = timed(lambda: psutil.net_connections("tcp"), repeat)
        ss_times = timed(ss, repeat, resource.RUSAGE_CHILDREN)
    finally:
        conns.close()
    print(
        f"\n{n:,} connections: {sockets:,} sockets sampled "
        f"({attributed:,} attributed, {with_counters:,} with byte counters; "
        f"backend {sampler.backend}), {repeat} runs"
    )
    print(
        f"  {'':<38} {'median ms':>9} {'min - max ms':>21} {'vs ss':>8} {'CPU ms':>9} {'vs ss':>8}"
    )
    print(row("netwatch sample (warm)", warm, ss_times))
    print(row("netwatch sample (cold: new sampler)", cold, ss_times))
    print(row("netwatch engine tick (sample+flows)", ticks, ss_times))
    print(row("psutil.net_connections('tcp')", ps, ss_times))
    print(row("ss -tanpi (command)", ss_times, ss_times))


def _dump_only(_: SocketSampler) -> Callable[[], object]:
    """The kernel's part and its parsing: the TCP and UDP sock_diag dumps, nothing else.

    This is the floor of any sample with tcp_info counters: what is left of the sampler's
    cost above it is attribution and turning records into entries.
    """
    diag = netlink.DiagSocket()

    def dump() -> object:
        return (
            diag.dump_tcp(),
            diag.dump(socket.AF_INET, socket.IPPROTO_UDP),
            diag.dump(socket.AF_INET6, socket.IPPROTO_UDP),
        )

    return dump


CPU_STEPS = ("netlink dump alone", "sampler.sample()", "engine.tick()")


def _step(name: str) -> Callable[[], object]:
    if name == CPU_STEPS[0]:
        return _dump_only(SocketSampler(namespaces=False))
    if name == CPU_STEPS[1]:
        return SocketSampler(namespaces=False).sample
    return Engine(SocketSampler(namespaces=False), SystemClock()).tick


def cpu_step(name: str, seconds: int, offset: float) -> None:
    """Child process: run one step once a second for `seconds`; print each call's CPU ms.

    Each step runs in its own process, as the sampler does in netwatch (one sampler per
    process, its caches alone in that process's memory); the children run side by side,
    a third of a second apart, so the machine's background noise falls on all alike.
    """
    step = _step(name)
    step()  # the cold first sample is start-up cost, not steady state
    calls = []
    start = time.monotonic() + offset
    for i in range(seconds):
        time.sleep(max(0.0, start + i - time.monotonic()))
        cpu0 = time.process_time()
        step()
        calls.append((time.process_time() - cpu0) * 1000)
    print(json.dumps(calls))


def cpu_at_1hz(n: int, seconds: int) -> None:
    """Each step once a second in its own process (see `cpu_step`), for `seconds`.

    Each call's CPU time (user + kernel, `time.process_time`) is taken alone; the table
    gives the median and 90th percentile per call, and the mean as % of a core.
    """
    conns = Connections(n)
    try:
        children = [
            subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--cpu-step",
                    name,
                    "--cpu-seconds",
                    str(seconds),
                    "--offset",
                    f"{k / len(CPU_STEPS):.3f}",
                ],
                stdout=subprocess.PIPE,
                text=True,
            )  # fmt: skip
            for k, name in enumerate(CPU_STEPS)
        ]
        per_call = [json.loads(child.communicate()[0]) for child in children]
    finally:
        conns.close()
    print(f"\nCPU at one sample per second, {n:,} connections, {seconds} calls each")
    print(f"  {'':<20} {'% of one core':>13} {'median ms/call':>15} {'p90 ms/call':>12}")
    for name, calls in zip(CPU_STEPS, per_call, strict=True):
        p90 = statistics.quantiles(calls, n=10)[-1]
        mean = statistics.fmean(calls)
        print(f"  {name:<20} {mean / 10:12.2f}% {statistics.median(calls):15.2f} {p90:12.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--cpu-seconds", type=int, default=30)
    parser.add_argument("--cpu-connections", type=int, default=1000)
    parser.add_argument("--cpu-step", choices=CPU_STEPS, help=argparse.SUPPRESS)
    parser.add_argument("--offset", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cpu_step:
        cpu_step(args.cpu_step, args.cpu_seconds, args.offset)
        return
    print(
        f"netwatch socket sample bench ({psutil.cpu_count()} CPUs, Python {sys.version.split()[0]})"
    )
    for n in (int(x) for x in args.sizes.split(",")):
        measure(n, args.repeat)
    if args.cpu_seconds > 0:
        cpu_at_1hz(args.cpu_connections, args.cpu_seconds)


if __name__ == "__main__":
    main()
