"""What one refresh costs the daemon's collector, and what a full sample costs, at N connections.

Between full samples (every 5 s) the collector re-reads only the sockets capture saw packets
on (`SocketSampler.refresh`); issue 12 asked that the split daemon cost no more CPU than the
one-process daemon, and this is the collector's share of a busy tick. Two holder processes
(bench/daemon.py's) keep N loopback connections, A of them sending 100 bytes a second; the
sampler is built as the collector builds it; one tick a second for `--ticks` ticks, a full
sample every fifth, as the daemon does. Printed, as median CPU ms (this process, user +
kernel):

* refresh: the A connections' both ends re-read, and the first refresh after a full sample;
* full sample;
* the collector's table diff and framing of a refresh (`TableDiff.message`, `codec.frame`);
* the analyzer's decoding of that message (`RemoteSockets`), with its lookup index built.

As root the run happens in a private network and pid namespace (only these sockets and
processes are listed, as in bench/daemon.py); otherwise the host's sockets count too.

    python bench/refresh.py [--connections 10000] [--active 100] [--ticks 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import daemon as holders  # noqa: E402  # bench/daemon.py: the connection holders

from netwatch import codec  # noqa: E402
from netwatch.model import SocketTable, Transport  # noqa: E402
from netwatch.sources.collector import TableDiff  # noqa: E402
from netwatch.sources.namespaces import Namespaces  # noqa: E402
from netwatch.sources.remote import RemoteSockets  # noqa: E402
from netwatch.sources.sockets import Conversation, SocketSampler  # noqa: E402

INSIDE = "NETWATCH_BENCH_REFRESH_INSIDE"


def active_ends(before: SocketTable, after: SocketTable) -> list[Conversation]:
    """The conversations of the sockets whose segment counters moved between two samples."""
    was = {e.inode: e for e in before.entries if e.inode}
    out = []
    for e in after.entries:
        old = was.get(e.inode)
        moved = old is not None and (old.segs_in, old.segs_out) != (e.segs_in, e.segs_out)
        if moved and e.key.transport is Transport.TCP and e.key.remote is not None:
            out.append((e.key.transport, e.key.local, e.key.remote))
    return out


def run(connections: int, active: int, ticks: int) -> None:
    held = holders.hold(connections, active)
    try:
        sampler = SocketSampler(namespaces=Namespaces(enter=False))
        diff, remote = TableDiff(), RemoteSockets(None)  # type: ignore[arg-type]  # no link
        first = sampler.sample()
        remote._decode(codec.parse(codec.frame(diff.message(first))))
        time.sleep(2.5)
        second = sampler.sample()
        table = remote._decode(codec.parse(codec.frame(diff.message(second))))
        ends = active_ends(first, second)
        rows: dict[str, list[float]] = {
            k: [] for k in ("refresh", "first refresh", "full sample", "diff+frame", "decode")
        }
        for tick in range(ticks):
            time.sleep(1.0)
            full = tick % 5 == 0
            c0 = time.process_time()
            made = sampler.sample() if full else sampler.refresh(ends)
            c1 = time.process_time()
            patched = getattr(sampler, "patched", None)  # None: a tree from before it existed
            line = codec.frame(diff.message(made, patched(made)) if patched else diff.message(made))
            c2 = time.process_time()
            if ends:
                table.lookup(*ends[0])  # the analyzer's engine looks sockets up: an index
            c3 = time.process_time()
            table = remote._decode(codec.parse(line))
            c4 = time.process_time()
            kind = "full sample" if full else "first refresh" if tick % 5 == 1 else "refresh"
            rows[kind].append(1000 * (c1 - c0))
            if not full:
                rows["diff+frame"].append(1000 * (c2 - c1))
                rows["decode"].append(1000 * (c4 - c3))
        print(f"{connections} connections ({2 * connections} sockets), {len(ends)} ends active")
        for name, times in rows.items():
            if times:
                print(f"  {name:<14} {statistics.median(times):8.2f} ms CPU  (n={len(times)})")
    finally:
        holders.release(held)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--connections", type=int, default=10_000)
    ap.add_argument("--active", type=int, default=100)
    ap.add_argument("--ticks", type=int, default=20)
    args = ap.parse_args()
    if os.geteuid() == 0 and not os.environ.get(INSIDE):
        os.environ[INSIDE] = "1"
        script = 'ip link set lo up && exec "$0" "$@"'
        argv = [sys.executable, str(Path(__file__).resolve()), *sys.argv[1:]]
        unshare = ["unshare", "--net", "--pid", "--fork", "--mount-proc"]
        sys.exit(subprocess.run([*unshare, "sh", "-c", script, *argv], check=False).returncode)
    run(args.connections, args.active, args.ticks)


if __name__ == "__main__":
    main()
