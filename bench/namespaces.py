"""What do other network namespaces (containers) cost a socket sample? (root)

Makes N network namespaces (default 5), each with one process holding a listener and K
established loopback connections (2K+1 sockets), then prints the median CPU time (user +
kernel) of:

* a warm `SocketSampler.sample()` without namespaces, and with them listed at every sample
  (sock_diag inside each namespace, as root; and from `/proc/<pid>/net`, as the daemon's
  collector does without CAP_SYS_ADMIN), and the difference per namespace listed; the
  sampler lists each namespace every `namespaces.LIST_EVERY` seconds, not every sample,
  and "kept lists" is a sample between two listings;
* one look for namespaces (`/proc/*/ns/net`, one `stat` per process), which runs at most
  every `namespaces.RESCAN` seconds.

Only the bench's own namespaces are listed (`Only`); the look for namespaces walks every
process. Usage: python bench/namespaces.py [--namespaces 5] [--sockets 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from netwatch.sources.namespaces import Namespaces  # noqa: E402  # after the checkout
from netwatch.sources.sockets import SocketSampler  # noqa: E402

HOLDER = """
import socket, sys, time
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(256)
keep = []
for _ in range(int(sys.argv[1])):
    c = socket.create_connection(srv.getsockname()); keep += [c, srv.accept()[0]]
print("ready", flush=True)
time.sleep(600)
"""


class Only(Namespaces):
    """`Namespaces` restricted to the bench's own (other tests' labs come and go)."""

    def __init__(self, inodes: set[int], **kw: bool | float) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]  # rescan and enter only
        self.inodes = inodes

    def in_use(self) -> dict[int, list[int]]:
        return {i: p for i, p in super().in_use().items() if i in self.inodes}


def cpu(fn: Callable[[], object], repeat: int) -> float:
    """Median CPU milliseconds (user + kernel) of `fn` over `repeat` runs, after one warm-up."""
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        times.append((time.process_time() - t0) * 1000)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--namespaces", type=int, default=5)
    ap.add_argument("--sockets", type=int, default=20, help="connections per namespace")
    ap.add_argument("--repeat", type=int, default=30)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/namespaces.py needs root (it makes network namespaces)")
        return 1
    names = [f"nwbench{os.getpid()}n{i}" for i in range(args.namespaces)]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for name in names:
            subprocess.run(["ip", "netns", "add", name], check=True)
            subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
            p = subprocess.Popen(
                ["ip", "netns", "exec", name, sys.executable, "-c", HOLDER, str(args.sockets)],
                stdout=subprocess.PIPE,
            )
            procs.append(p)
            if p.stdout is None or p.stdout.readline().strip() != b"ready":
                raise RuntimeError(f"the socket holder in {name} did not start")
        mine = {os.stat(f"/run/netns/{name}").st_ino for name in names}
        host = SocketSampler(namespaces=False)
        entered = SocketSampler(namespaces=Only(mine, rescan=3600, list_every=0))
        proc_net = SocketSampler(namespaces=Only(mine, rescan=3600, list_every=0, enter=False))
        cached = SocketSampler(namespaces=Only(mine, rescan=3600, list_every=3600))
        base = cpu(host.sample, args.repeat)
        rows = [("host only", base, 0, 0)]
        for label, sampler in (
            ("+ sock_diag inside", entered),
            ("+ /proc/<pid>/net", proc_net),
            ("+ kept lists", cached),
        ):
            ms = cpu(sampler.sample, args.repeat)
            ns = sampler.namespaces
            if ns is None:
                raise RuntimeError("no netlink here: namespaces are not listed")
            contained = sum(e.container is not None for e in sampler.sample().entries)
            rows.append((label, ms, len(ns.containers), contained))
        look = Namespaces(rescan=0)
        look_ms = cpu(look.in_use, args.repeat)
        pids = sum(n.isdecimal() for n in os.listdir("/proc"))
        print(f"{args.namespaces} bench namespaces x {2 * args.sockets + 1} sockets")
        print(f"{'sample':<22} {'CPU ms':>8} {'namespaces':>11} {'their sockets':>14} {'ms/ns':>7}")
        for label, ms, count, contained in rows:
            per = f"{(ms - base) / count:7.2f}" if count else "      -"
            print(f"{label:<22} {ms:8.2f} {count:>11} {contained:>14} {per}")
        print(f"one look for namespaces ({pids} processes): {look_ms:.2f} ms CPU")
        for s in (host, entered, proc_net, cached):
            s.close()
    finally:
        for p in procs:
            p.kill()
            p.wait()
        for name in names:
            subprocess.run(["ip", "netns", "del", name], check=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
