"""Where an address lives (global, private, loopback, ...): decides whether data files are asked.

Pure: classifies `ipaddress` objects by the IANA special-purpose registries. `RULES` is the
readable definition (first match wins); `scope_of` answers from a flat interval table built
from it once (one bisect per address, about 10x faster than testing each network), and
`classify` is the reference the tests compare the table with. Only GLOBAL addresses are
looked up in discovered and bundled data; explicit databases are asked for every address.
"""

from __future__ import annotations

import bisect
import ipaddress
from collections.abc import Sequence

from netwatch.model import IPAddress, Scope, parse_ip

_N = ipaddress.ip_network
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")

RULES: Sequence[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, Scope]] = (
    (_N("127.0.0.0/8"), Scope.LOOPBACK),
    (_N("::1/128"), Scope.LOOPBACK),
    (_N("0.0.0.0/32"), Scope.UNSPECIFIED),
    (_N("::/128"), Scope.UNSPECIFIED),
    (_N("169.254.0.0/16"), Scope.LINK_LOCAL),
    (_N("fe80::/10"), Scope.LINK_LOCAL),
    (_N("224.0.0.0/4"), Scope.MULTICAST),
    (_N("ff00::/8"), Scope.MULTICAST),
    (_N("100.64.0.0/10"), Scope.CGNAT),
    (_N("192.0.2.0/24"), Scope.DOCUMENTATION),
    (_N("198.51.100.0/24"), Scope.DOCUMENTATION),
    (_N("203.0.113.0/24"), Scope.DOCUMENTATION),
    (_N("2001:db8::/32"), Scope.DOCUMENTATION),
    (_N("3fff::/20"), Scope.DOCUMENTATION),
    (_N("10.0.0.0/8"), Scope.PRIVATE),
    (_N("172.16.0.0/12"), Scope.PRIVATE),
    (_N("192.168.0.0/16"), Scope.PRIVATE),
    (_N("fc00::/7"), Scope.PRIVATE),
    # Globally reachable exceptions inside reserved blocks (RFC 6890 registries).
    (_N("192.0.0.9/32"), Scope.GLOBAL),
    (_N("192.0.0.10/32"), Scope.GLOBAL),
    (_N("2001:1::1/128"), Scope.GLOBAL),
    (_N("2001:1::2/128"), Scope.GLOBAL),
    (_N("2001:3::/32"), Scope.GLOBAL),
    (_N("2001:4:112::/48"), Scope.GLOBAL),
    (_N("2001:20::/28"), Scope.GLOBAL),
    (_N("0.0.0.0/8"), Scope.RESERVED),
    (_N("192.0.0.0/24"), Scope.RESERVED),
    (_N("198.18.0.0/15"), Scope.RESERVED),
    (_N("240.0.0.0/4"), Scope.RESERVED),
    (_N("100::/64"), Scope.RESERVED),
    (_N("64:ff9b:1::/48"), Scope.RESERVED),
    (_N("2001::/23"), Scope.RESERVED),
    (_N("fec0::/10"), Scope.RESERVED),
)


def classify(ip: IPAddress) -> Scope:
    """Reference classification: the first rule whose network holds `ip`, else GLOBAL."""
    for net, scope in RULES:
        if net.version == ip.version and ip in net:
            return scope
    return Scope.GLOBAL


def _table(version: int) -> tuple[list[int], list[Scope]]:
    """Every rule boundary, and the scope of the segment that starts there."""
    make = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
    top = 2**32 if version == 4 else 2**128
    points = {0}
    for net, _ in RULES:
        if net.version == version:
            points.add(int(net.network_address))
            points.add(int(net.broadcast_address) + 1)
    starts = sorted(p for p in points if p < top)
    return starts, [classify(make(p)) for p in starts]


_TABLES = {4: _table(4), 6: _table(6)}


def lookup_address(ip: IPAddress) -> IPAddress:
    """Return the address to look up: IPv4-mapped and NAT64 (64:ff9b::/96) give their IPv4.

    None of the ip-location-db or DB-IP files map `::ffff:0:0/96`, so the unmapping is ours.
    """
    if ip.version == 6:
        mapped = ip.ipv4_mapped
        if mapped is not None:
            return mapped
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def scope_of(value: IPAddress | str) -> Scope:
    """Classify an address; raises ValueError for a string that is not an IP address."""
    ip = lookup_address(parse_ip(value))
    starts, scopes = _TABLES[ip.version]
    return scopes[bisect.bisect_right(starts, int(ip)) - 1]
