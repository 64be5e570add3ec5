"""Run inside a lab namespace: the live engine with packet capture, one snapshot per tick.

    ip netns exec NS python -m tests.live.capture_probe OUT [--filter BPF] [--interval S]
        [--full-every S] [--interface IF]

Prints `ready` once capture runs, ticks the real engine (socket sampler + `CaptureFlows`)
until a line arrives on stdin (or `--max-seconds` pass), then writes every snapshot to OUT as
codec JSON lines and exits. This is netwatch's own live path, run where the traffic is.
"""

from __future__ import annotations

import argparse
import json
import select
import sys
import time

from netwatch import codec
from netwatch.pipeline.build import build_live_engine
from netwatch.pipeline.capture_flows import CaptureFlows


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--filter", default=None)
    ap.add_argument("--interval", type=float, default=0.3)
    ap.add_argument("--max-seconds", type=float, default=60.0)
    ap.add_argument("--full-every", type=float, default=0.0)
    ap.add_argument("--interface", default=None, help="capture on this interface only")
    ap.add_argument("--containers", action="store_true", help="list other namespaces too")
    args = ap.parse_args()
    packets = CaptureFlows.open(interface=args.interface, bpf=args.filter)
    engine = build_live_engine(
        packets=packets, full_every=args.full_every, containers=args.containers
    )
    snapshots = [engine.tick()]
    print("ready", flush=True)
    deadline = time.monotonic() + args.max_seconds
    while time.monotonic() < deadline:
        if select.select([sys.stdin], [], [], args.interval)[0]:
            break
        snapshots.append(engine.tick())
    packets.settle()  # the last packets are still in the kernel's ring block
    snapshots.append(engine.tick())
    packets.close()
    with open(args.out, "w", encoding="utf-8") as fh:
        for snap in snapshots:
            fh.write(json.dumps(codec.snapshot_to_dict(snap)) + "\n")
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
