"""Where an address lives (global, private, loopback, ...): decides whether data files are asked.

Pure: classifies `ipaddress` objects with the registries' special-purpose ranges. Only GLOBAL
addresses are looked up in discovered and bundled data; explicit databases are asked for every
address (an admin may map internal ranges on purpose).
"""

from __future__ import annotations

import ipaddress

from netwatch.model import IPAddress, Scope, parse_ip

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network

_CGNAT = _V4("100.64.0.0/10")
_DOCUMENTATION = (
    _V4("192.0.2.0/24"),
    _V4("198.51.100.0/24"),
    _V4("203.0.113.0/24"),
    _V6("2001:db8::/32"),
    _V6("3fff::/20"),
)
_PRIVATE = (
    _V4("10.0.0.0/8"),
    _V4("172.16.0.0/12"),
    _V4("192.168.0.0/16"),
    _V6("fc00::/7"),
)
_NAT64 = _V6("64:ff9b::/96")
_IETF_PROTOCOL = _V4("192.0.0.0/24")
"""RFC 6890 special-purpose block; only .9 (PCP anycast) and .10 (TURN anycast) are global.
Python before 3.12.4 only knows 192.0.0.0/29 of it."""
_IETF_GLOBAL = (ipaddress.IPv4Address("192.0.0.9"), ipaddress.IPv4Address("192.0.0.10"))


def lookup_address(ip: IPAddress) -> IPAddress:
    """Return the address to look up: IPv4-mapped and NAT64 (64:ff9b::/96) give their IPv4.

    None of the ip-location-db or DB-IP files map `::ffff:0:0/96`, so the unmapping is ours.
    """
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def scope_of(value: IPAddress | str) -> Scope:
    """Classify an address; raises ValueError for a string that is not an IP address."""
    ip = lookup_address(parse_ip(value))
    if ip.is_loopback:
        return Scope.LOOPBACK
    if ip.is_unspecified:
        return Scope.UNSPECIFIED
    if ip.is_link_local:
        return Scope.LINK_LOCAL
    if ip.is_multicast:
        return Scope.MULTICAST
    if isinstance(ip, ipaddress.IPv4Address):
        if ip in _CGNAT:
            return Scope.CGNAT
        if ip == ipaddress.IPv4Address("255.255.255.255"):
            return Scope.RESERVED
        if ip in _IETF_PROTOCOL and ip not in _IETF_GLOBAL:
            return Scope.RESERVED
    if any(ip in net for net in _DOCUMENTATION if net.version == ip.version):
        return Scope.DOCUMENTATION
    if any(ip in net for net in _PRIVATE if net.version == ip.version):
        return Scope.PRIVATE
    if ip.is_global:
        return Scope.GLOBAL
    return Scope.RESERVED
