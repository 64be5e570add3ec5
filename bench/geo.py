"""GeoIP lookup speed: 100k random addresses through the bundled file, cold and warm cache.

Prints a table (lookups per second) for:
* maxminddb `Reader.get` on the bundled file (the C extension, no netwatch code): the floor;
* `GeoLookup.lookup` cold (every address new: scope + mmdb + normalise + RemoteInfo) and warm
  (the same addresses again: the per-IP LRU cache);
* `Enricher.remote_info` warm (what the pipeline calls per flow).
Addresses: 75 % random IPv4, 25 % random in 2000::/4, seeded. Never asserts.
Usage: python bench/geo.py [--n 100000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import ipaddress
import random
import resource
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import maxminddb  # noqa: E402  # after the path tweak so a checkout runs without install

from netwatch.enrich.enricher import Enricher  # noqa: E402
from netwatch.enrich.geo import GeoDatabase, GeoLookup, Origin  # noqa: E402
from netwatch.enrich.geo_paths import bundled_path  # noqa: E402
from netwatch.model import IPAddress  # noqa: E402


def addresses(n: int, seed: int = 7) -> list[IPAddress]:
    rng = random.Random(seed)
    out: list[IPAddress] = []
    for _ in range(n):
        if rng.random() < 0.75:
            out.append(ipaddress.IPv4Address(rng.getrandbits(32)))
        else:
            out.append(ipaddress.IPv6Address((0x2 << 124) | rng.getrandbits(124)))
    return out


def rate(fn: Callable[[IPAddress], object], ips: Sequence[IPAddress]) -> float:
    start = time.perf_counter()
    for ip in ips:
        fn(ip)
    return len(ips) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    path = bundled_path()
    if path is None:
        sys.exit("bundled mmdb not found")
    ips = addresses(args.n)
    rows: list[tuple[str, list[float]]] = []

    reader = maxminddb.open_database(str(path))
    rows.append(
        ("maxminddb Reader.get (C ext, floor)", [rate(reader.get, ips) for _ in range(args.repeat)])
    )
    reader.close()

    cold, warm = [], []
    for _ in range(args.repeat):
        geo = GeoLookup([GeoDatabase.open(path, Origin.BUNDLED)], cache_size=2 * args.n)
        cold.append(rate(geo.lookup, ips))
        warm.append(rate(geo.lookup, ips))
        geo.close()
    rows.append(("GeoLookup.lookup cold (new addresses)", cold))
    rows.append(("GeoLookup.lookup warm (LRU hit)", warm))

    enricher = Enricher([GeoDatabase.open(path, Origin.BUNDLED)])
    enricher.geo.lookup = GeoLookup(enricher.geo.databases, cache_size=2 * args.n).lookup  # type: ignore[method-assign]
    rate(enricher.remote_info, ips)
    rows.append(
        ("Enricher.remote_info warm", [rate(enricher.remote_info, ips) for _ in range(args.repeat)])
    )

    print(
        f"{args.n} random addresses (75 % IPv4, 25 % 2000::/4), file {path.name} "
        f"({path.stat().st_size / 1e6:.1f} MB), {args.repeat} runs"
    )
    print(f"{'path':<42} {'min/s':>12} {'median/s':>12} {'max/s':>12}")
    for name, values in rows:
        v = sorted(values)
        print(f"{name:<42} {v[0]:>12,.0f} {v[len(v) // 2]:>12,.0f} {v[-1]:>12,.0f}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:.0f} MB")


if __name__ == "__main__":
    main()
