"""Building model values: the dataclass's own `__init__` against `model.construct.slotted_init`.

Each served class is built the way the hot paths build it (keywords, the usual fields set),
`--number` times, both ways, in this process; the table prints microseconds per value.

    python bench/construct.py [--number 200000]
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
import timeit
from collections.abc import Callable
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from netwatch.model import (  # noqa: E402  # after the path insert
    Direction,
    Endpoint,
    EnrichedFlow,
    Flow,
    FlowKey,
    PacketContext,
    PacketMeta,
    SocketEntry,
    Transport,
)
from netwatch.model.construct import dataclass_init  # noqa: E402


def cases() -> dict[type, Callable[[type], object]]:
    """How the hot paths build each class (`cls` is the class, so both inits can run)."""
    ip = ipaddress.ip_address("192.0.2.7")
    local, remote = Endpoint(ip, 40000), Endpoint(ip, 443)
    key = FlowKey(Transport.TCP, local, remote)
    flow = Flow(key=key, direction=Direction.OUTBOUND, serial=1, rev_facts=2, rev_traffic=3)
    return {
        Endpoint: lambda c: c(ip, 443),
        FlowKey: lambda c: c(Transport.TCP, local, remote),
        SocketEntry: lambda c: c(
            key=key,
            state="ESTABLISHED",
            direction=Direction.UNKNOWN,
            inode=7,
            uid=0,
            bytes_sent=1,
            bytes_received=2,
            segs_out=3,
            segs_in=4,
            stamp=5,
        ),  # fmt: skip
        Flow: lambda c: c(
            key=key,
            direction=Direction.OUTBOUND,
            state="ESTABLISHED",
            first_seen=1.0,
            last_seen=2.0,
            bytes_sent=3,
            bytes_received=4,
            packets_sent=5,
            packets_received=6,
            interface="eth0",
            egress_by="capture",
        ),  # fmt: skip
        EnrichedFlow: lambda c: c(flow, None, 4),
        PacketMeta: lambda c: c(1.0, Transport.TCP, local, remote, 60, b"x", 16, 6, "eth0", 0, 2),
        PacketContext: lambda c: c(key, True, 0, 1.0),
    }


def with_dataclass_init(cls: type) -> type:
    """A subclass built by the dataclass's own `__init__` (slots stay the parent's)."""
    return type(f"Plain{cls.__name__}", (cls,), {"__init__": dataclass_init(cls), "__slots__": ()})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--number", type=int, default=200_000)
    args = ap.parse_args()
    print("| class | dataclass __init__, us | slotted_init, us | saved |")
    print("|---|---:|---:|---:|")
    for cls, build in cases().items():
        plain = with_dataclass_init(cls)
        theirs = min(timeit.repeat(partial(build, plain), number=args.number, repeat=3))
        ours = min(timeit.repeat(partial(build, cls), number=args.number, repeat=3))
        a, b = theirs / args.number * 1e6, ours / args.number * 1e6
        print(f"| {cls.__name__} | {a:.2f} | {b:.2f} | {100 * (a - b) / a:.0f} % |")


if __name__ == "__main__":
    main()
