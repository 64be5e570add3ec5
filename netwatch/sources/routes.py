"""Which interface a packet to an address would leave by: the kernel's route lookup.

Leak detection needs each flow's egress interface. Capture knows it from the packet; without
capture, the kernel answers the same question `ip route get ADDR` asks: an RTM_GETROUTE
request over NETLINK_ROUTE, answered by one RTM_NEWROUTE message whose RTA_OIF attribute is
the output interface's index. The lookup sees policy routing the way ordinary traffic does
(a wg-quick tunnel's fwmark rule sends the tunnel's own packets direct and everything else
into the tunnel, and an unmarked lookup gets the tunnel), which is what a leak check wants.

The layouts are three fixed structs (`nlmsghdr`, `rtmsg`, `rtattr`; linux/rtnetlink.h), so
they are read with `struct` like the sock_diag messages in `sources.netlink`; pyroute2 would
be a large dependency for one request. Answers are cached per address for a short time,
bounded, because a tick asks for many flows and routes change rarely. Parsing never raises.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace

from netwatch.model import DefaultRoute, HostFacts, IPAddress
from netwatch.sources.netlink import NLM_F_REQUEST, NLMSG_ERROR

NETLINK_ROUTE = 0
RTM_NEWROUTE = 24
RTM_GETROUTE = 26
RTA_DST = 1
RTA_OIF = 4

_NLMSGHDR = struct.Struct("=IHHII")
# rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags
_RTMSG = struct.Struct("=BBBBBBBBI")
_RTA = struct.Struct("=HH")
_I32 = struct.Struct("=i")

CACHE_SECONDS = 10.0
"""How long an answer is reused: a route change (a tunnel coming up) shows within this."""
CACHE_SIZE = 4096
"""Addresses remembered at most (least recently asked go first)."""


def _align(n: int) -> int:
    return (n + 3) & ~3


def build_request(addr: IPAddress, seq: int = 1) -> bytes:
    """An RTM_GETROUTE request for one destination address (what `ip route get` sends)."""
    family = socket.AF_INET if addr.version == 4 else socket.AF_INET6
    raw = addr.packed
    rta = _RTA.pack(_RTA.size + len(raw), RTA_DST) + raw
    body = _RTMSG.pack(family, len(raw) * 8, 0, 0, 0, 0, 0, 0, 0) + rta
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), RTM_GETROUTE, NLM_F_REQUEST, seq, 0) + body


def parse_reply(data: bytes) -> int | None:
    """The output interface index of the first RTM_NEWROUTE in `data`; None when the reply
    is an error (no route), has no RTA_OIF, or is malformed."""
    off = 0
    while off + _NLMSGHDR.size <= len(data):
        length, kind, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data, off)
        if length < _NLMSGHDR.size or off + length > len(data):
            return None
        if kind == RTM_NEWROUTE:
            return _oif(data, off + _NLMSGHDR.size + _RTMSG.size, off + length)
        if kind == NLMSG_ERROR:
            return None
        off += _align(length)
    return None


def _oif(data: bytes, start: int, end: int) -> int | None:
    """RTA_OIF among the route attributes between `start` and `end`."""
    off = start
    while off + _RTA.size <= end:
        rlen, rtype = _RTA.unpack_from(data, off)
        if rlen < _RTA.size or off + rlen > end:
            return None
        if rtype == RTA_OIF and rlen >= _RTA.size + _I32.size:
            index = int(_I32.unpack_from(data, off + _RTA.size)[0])
            return index if index > 0 else None
        off += _align(rlen)
    return None


class RouteLookup:
    """`egress(addr)`: the name of the interface a packet to `addr` leaves by, or None.

    One netlink socket, opened on first use; a failing socket (no netlink in a sandbox) makes
    every answer None, never an exception, so leak rules simply claim nothing.
    """

    def __init__(
        self,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        names: Callable[[int], str] = socket.if_indextoname,
    ) -> None:
        self._monotonic = monotonic
        self._names = names
        self._sock: socket.socket | None = None
        self._broken = False
        self._seq = 0
        self._cache: OrderedDict[IPAddress, tuple[float, str | None]] = OrderedDict()

    def egress(self, addr: IPAddress | str) -> str | None:
        """The interface name for `addr` (cached `CACHE_SECONDS`)."""
        ip = ipaddress.ip_address(addr) if isinstance(addr, str) else addr
        now = self._monotonic()
        hit = self._cache.get(ip)
        if hit is not None and now - hit[0] < CACHE_SECONDS:
            self._cache.move_to_end(ip)
            return hit[1]
        name = self._ask(ip)
        self._cache[ip] = (now, name)
        self._cache.move_to_end(ip)
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return name

    def _ask(self, ip: IPAddress) -> str | None:
        sock = self._socket()
        if sock is None:
            return None
        self._seq = (self._seq + 1) & 0x7FFFFFFF
        try:
            sock.send(build_request(ip, self._seq))
            index = parse_reply(sock.recv(1 << 14))
        except OSError:
            return None
        if index is None:
            return None
        try:
            return self._names(index)
        except OSError:  # the interface went away between the answer and now
            return None

    def _socket(self) -> socket.socket | None:
        if self._sock is None and not self._broken:
            try:
                sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
                sock.settimeout(1.0)
                sock.bind((0, 0))
            except OSError:
                self._broken = True
                return None
            self._sock = sock
        return self._sock

    def close(self) -> None:
        """Close the netlink socket."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None


PROBES = (("ipv4", "1.1.1.1"), ("ipv6", "2606:4700:4700::1111"))
"""Public addresses whose route stands for "the internet" (`ip route get 1.1.1.1`). Only the
kernel's routing table is asked; no packet is sent to them."""


def interfaces() -> tuple[str, ...]:
    """The names of the network interfaces that exist now, sorted."""
    try:
        return tuple(sorted(name for _, name in socket.if_nameindex()))
    except OSError:
        return ()


def default_routes(
    lookup: RouteLookup | None = None, probes: tuple[tuple[str, str], ...] = PROBES
) -> tuple[DefaultRoute, ...]:
    """Which interface internet traffic of each family leaves by (None: no route)."""
    own = lookup is None
    ask = lookup or RouteLookup()
    try:
        return tuple(DefaultRoute(family, ask.egress(addr)) for family, addr in probes)
    finally:
        if own:
            ask.close()


def with_links(facts: HostFacts, lookup: RouteLookup | None = None) -> HostFacts:
    """`facts` with this machine's interfaces and default routes now; the very object when
    they did not change, so the detection context stays the same (`HostFacts` equality)."""
    links, routes = interfaces(), default_routes(lookup)
    if (links, routes) == (facts.interfaces, facts.routes):
        return facts
    return replace(facts, interfaces=links, routes=routes)
