"""Provider range lookup speed: `RangeMatcher` over ~50k prefixes vs a plain dict of /32s.

Builds synthetic provider lists shaped like the real ones (seeded, random addresses): most
entries single addresses (Mullvad, ProtonVPN and NordVPN list servers one by one), the rest
prefixes of many lengths (iCloud Private Relay's egress CSV: IPv4 /22../32, IPv6 /40../64).
Then looks up N addresses, half inside a range and half random, and prints lookups per second
for:
* a dict keyed by address holding only the /32 and /128 entries: the floor (one hash lookup,
  but it cannot hold a prefix);
* `RangeMatcher.find` (one dict per prefix length, longest first);
* `RangeMatcher.match` (find plus building the `ListHit`s, as the enricher calls it).
Never asserts. Usage: python bench/ranges.py [--prefixes 50000] [--n 200000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import ipaddress
import random
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from netwatch.enrich.ranges import ProviderRange, RangeList, RangeMatcher  # noqa: E402
from netwatch.model import IPAddress  # noqa: E402

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def networks(count: int, rng: random.Random) -> list[Network]:
    """80 % single addresses (3:1 IPv4), 20 % prefixes of varied lengths (1:1 IPv4)."""
    out: list[Network] = []
    for _ in range(count):
        if rng.random() < 0.8:
            if rng.random() < 0.75:
                out.append(ipaddress.IPv4Network(rng.getrandbits(32)))
            else:
                out.append(ipaddress.IPv6Network((0x2 << 124) | rng.getrandbits(124)))
        elif rng.random() < 0.5:
            length = rng.randint(22, 31)
            out.append(ipaddress.IPv4Network((rng.getrandbits(32), length), strict=False))
        else:
            length = rng.randint(40, 64)
            addr = (0x2 << 124) | rng.getrandbits(124)
            out.append(ipaddress.IPv6Network((addr, length), strict=False))
    return out


def probes(nets: Sequence[Network], n: int, rng: random.Random) -> list[IPAddress]:
    """Half inside a listed network, half random addresses (mostly misses)."""
    out: list[IPAddress] = []
    for i in range(n):
        if i % 2:
            out.append(ipaddress.IPv4Address(rng.getrandbits(32)))
            continue
        net = nets[rng.randrange(len(nets))]
        offset = rng.randrange(net.num_addresses) if net.num_addresses > 1 else 0
        out.append(net.network_address + offset)
    return out


def rate(fn: Callable[[IPAddress], object], ips: Sequence[IPAddress], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for ip in ips:
            fn(ip)
        best = min(best, time.perf_counter() - start)
    return len(ips) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefixes", type=int, default=50_000)
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rng = random.Random(7)
    nets = networks(args.prefixes, rng)
    ips = probes(nets, args.n, rng)
    start = time.perf_counter()
    ranges = tuple(ProviderRange(net, (), None) for net in nets)
    matcher = RangeMatcher([RangeList("bench", ranges, "https://example.org/bench", 0.0)])
    build = time.perf_counter() - start
    hosts = {net.network_address: net for net in nets if net.num_addresses == 1}
    lengths = {(n.version, n.prefixlen) for n in nets}
    print(f"{len(nets)} prefixes ({len(hosts)} single addresses, {len(lengths)} lengths)")
    print(f"RangeMatcher built in {build * 1000:.0f} ms; {len(ips)} lookups, best of {args.repeat}")
    rows = [
        ("dict of /32 and /128 only", rate(hosts.get, ips, args.repeat)),
        ("RangeMatcher.find", rate(matcher.find, ips, args.repeat)),
        ("RangeMatcher.match", rate(lambda ip: matcher.match(ip, 443), ips, args.repeat)),
    ]
    for name, per_s in rows:
        print(f"{name:28} {per_s:>12,.0f} lookups/s")


if __name__ == "__main__":
    main()
