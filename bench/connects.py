"""What naming connections at their start costs, and how many it names, per mechanism.

Scenarios (the default; root, in namespaces `tests/starts_lab.py` builds, traffic only to a
documentation address): 20 short-lived processes in sequence each sending 256 KiB; one process
making 60 short connections; 30 processes started at once, each living 0.1-0.3 s; a UDP/53
flood of 16,000 datagrams (a new socket each) while another program makes 20 connections; and
container starts: 20 processes in sequence in a namespace with its own network and PID
namespaces, routed through the host. Each runs once per mechanism: `cgroup socket hooks` (a
kernel program in every TCP connect, `sources.cgroup_bpf`, with process events and the DNS
watcher beside it), `exec events + connection starts` (process events from the connector, then
the start watcher), `connection starts` (the watcher searching /proc alone) and `socket samples
only` (a socket sample each second, what is left without capture). The table gives, per
scenario and mechanism, the share of the scenario's connections named for the right program,
and the CPU the mechanism's own threads used, as % of one core over the scenario's wall time.

    python bench/connects.py [--scenarios sequence,one_process,burst,flood,container]
                             [--mechanisms hooks,events,starts,samples]

The older table (`--rates 10,100,500`): a client process opens short loopback TCP connections
at a fixed rate to a server process; each connection sends 5 bytes, waits for 4,200 bytes and
closes. The server answers at once (the worst case: the socket is gone within a millisecond) or
after a delay like a distant server's. This process runs `ConnectionOwners` (the SYN socket,
the one-socket sock_diag lookups and the /proc search) and nothing else, so its CPU time is the
feature's cost. The table gives, per rate: connections started, how many were named, and CPU %
of one core. Needs root (CAP_NET_RAW). Everything runs on loopback and ends with the script.
With the cgroup socket hooks (the default where they load; `--mechanisms events` for the
start watcher alone), "named" counts every TCP connect on the machine in those seconds,
other programs' too, so it can exceed "made".

    python bench/connects.py --rates 10,100,500 [--seconds 5] [--latencies 0,0.03]
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ipaddress import ip_address  # noqa: E402  # after sys.path
from typing import Any  # noqa: E402  # after sys.path

from netwatch.sources.connect_owners import ConnectionOwners  # noqa: E402  # after sys.path

SERVER = r"""
import socket, sys, threading, time
latency = float(sys.argv[1])
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 0)); srv.listen(1024)
print(srv.getsockname()[1], flush=True)
def serve(c):
    c.recv(64); time.sleep(latency); c.sendall(b"x" * 4200); c.close()
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""
CLIENT = r"""
import socket, sys, threading, time
port, rate, seconds = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
def fetch():
    s = socket.create_connection(("127.0.0.1", port)); s.sendall(b"hello")
    while s.recv(65536):
        pass
    s.close()
start, n, threads = time.monotonic(), 0, []
while time.monotonic() - start < seconds:
    t = threading.Thread(target=fetch); t.start(); threads.append(t); n += 1
    time.sleep(max(0.0, start + n / rate - time.monotonic()))
for t in threads:
    t.join()
print(n, flush=True)
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenarios", default="sequence,one_process,burst,flood,container")
    ap.add_argument("--mechanisms", default="hooks,events,starts,samples")
    ap.add_argument("--rates", default="", help="the older loopback rate table instead")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--latencies", default="0,0.03", help="server reply delays, seconds")
    args = ap.parse_args()
    if not args.rates:
        scenarios(args.scenarios.split(","), args.mechanisms.split(","))
        return
    print("| server answers after | connections/s | made | named | named % | CPU % of a core |")
    print("|---:|---:|---:|---:|---:|---:|")
    for latency in args.latencies.split(","):
        hooks = "hooks" in args.mechanisms.split(",")
        run(latency, [float(r) for r in args.rates.split(",")], args.seconds, hooks)


def run(latency: str, rates: list[float], seconds: float, hooks: bool) -> None:
    """One table row per rate, against a server that answers after `latency` seconds."""
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, latency], stdout=subprocess.PIPE, text=True
    )
    try:
        port = server.stdout.readline().strip() if server.stdout else ""
        for rate in rates:
            owners = ConnectionOwners().start(hooks=hooks)
            time.sleep(0.2)
            before = owners.stats()
            cpu0 = time.process_time()
            wall0 = time.monotonic()
            made = subprocess.run(
                [sys.executable, "-c", CLIENT, port, str(rate), str(seconds)],
                capture_output=True, text=True, check=True,
            ).stdout  # fmt: skip
            time.sleep(0.2)
            cpu = time.process_time() - cpu0
            wall = time.monotonic() - wall0
            after = owners.stats()
            owners.stop()
            named = after.attributed - before.attributed
            total = int(made)
            print(
                f"| {float(latency) * 1000:.0f} ms | {rate:,.0f} | {total:,} | {named:,} |"
                f" {100 * named / max(total, 1):.1f} | {100 * cpu / wall:.2f} |"
            )
    finally:
        server.kill()
        server.wait()


MECHANISMS = {
    "hooks": "cgroup socket hooks",
    "events": "exec events + connection starts",
    "starts": "connection starts",
    "samples": "socket samples only",
}
PROGRAMS = {"sequence": "seqsend", "one_process": "manyconn", "burst": "burstproc",
            "flood": "quietconn", "container": "ctrsend"}  # fmt: skip


def scenarios(names: list[str], mechanisms: list[str]) -> None:
    """One table row per scenario and mechanism (see the module doc)."""
    from tests.starts_lab import StartsLab

    print("| scenario | mechanism | made | named | named % | CPU % of a core |")
    print("|---|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as folder, StartsLab.open(Path(folder)) as lab:
        container = lab.lab.add_peer("203.0.113.81")
        for name in names:
            for mech in mechanisms:
                run_scenario(lab, container.ns, container.ip, name, mech)


def run_scenario(lab: Any, ctr_ns: str, ctr_ip: str, name: str, mech: str) -> None:
    """Run scenario `name` watched by mechanism `mech`; print its row."""
    from netwatch.model import Endpoint, FlowKey, Transport

    program = PROGRAMS[name]
    with watching(lab, mech) as (named_by, cpu):
        wall0, cpu0 = time.monotonic(), cpu()
        keys: list[FlowKey]
        if name == "container":
            argv = ["unshare", "--pid", "--fork", *lab.client(program, 1, 256 << 10)]
            ports = []
            for _ in range(20):
                res = lab.lab.run(ctr_ns, argv, timeout=30)
                ports += [int(p) for p in res.stdout.split()]
            sink = lab.key(1).remote  # seen from the host: the container's address, routed
            keys = [FlowKey(Transport.TCP, Endpoint(ip_address(ctr_ip), p), sink) for p in ports]
        else:
            scenario = "flood_and_connect" if name == "flood" else name
            keys = [lab.key(p) for p in getattr(lab, scenario)()]
        time.sleep(0.3)
        used = cpu() - cpu0
        wall = time.monotonic() - wall0
        named = sum(named_by(k) == program for k in keys)
    share = 100 * named / max(len(keys), 1)
    row = f"| {name} | {MECHANISMS[mech]} | {len(keys)} | {named} | {share:.0f} |"
    print(f"{row} {100 * used / wall:.2f} |", flush=True)


@contextlib.contextmanager
def watching(
    lab: Any, mech: str
) -> Iterator[tuple[Callable[[Any], str | None], Callable[[], float]]]:
    """(who opened a flow key, CPU seconds of the mechanism's threads) while it runs."""
    from tests.starts_lab import in_netns, start_watcher

    if mech != "samples":
        owners = start_watcher(lab.lab, events=mech in ("hooks", "events"), hooks=mech == "hooks")
        if mech == "hooks" and owners.hooks is None:
            raise SystemExit("the cgroup socket hooks cannot load here (see the log line)")
        threads = [owners._thread, owners._hooks_thread]
        threads += [owners.events._thread] if owners.events else []
        time.sleep(0.2)
        try:
            yield (lambda k: getattr(owners.owner(k), "name", None)), _thread_cpu(threads)
        finally:
            owners.stop()
        return
    from netwatch.sources.sockets import SocketSampler

    with in_netns(lab.lab.host):
        sampler = SocketSampler()
    seen: dict[Any, str] = {}
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(1.0):
            with in_netns(lab.lab.host):  # sockets it opens lazily must be the lab's
                table = sampler.sample()
            for entry in table.entries:
                if entry.process is not None:
                    seen[entry.key] = entry.process.name

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield seen.get, _thread_cpu([thread])
    finally:
        stop.set()
        thread.join(5)
        sampler.close()


def _thread_cpu(threads: list[Any]) -> Callable[[], float]:
    clocks = [time.pthread_getcpuclockid(t.ident) for t in threads if t is not None]

    def cpu() -> float:
        total = 0.0
        for clock in clocks:
            with contextlib.suppress(OSError):
                total += time.clock_gettime(clock)
        return total

    return cpu


if __name__ == "__main__":
    main()
