"""The socket table: every inet socket of one sample, with its owning process.

Produced by `sources.sockets`, consumed by `flows.attribution` (to make socket flows and to
attribute packet flows to processes).
"""

from __future__ import annotations

import ipaddress
import itertools
import operator
from dataclasses import dataclass, field

from netwatch.model.flow import Direction, Endpoint, FlowKey, IPAddress, ProcessRef, Transport

# A socket bound to :: also receives IPv4 (dual stack), whose addresses we keep unmapped.
_UNSPECIFIED: frozenset[IPAddress] = frozenset((ipaddress.IPv4Address(0), ipaddress.IPv6Address(0)))
PORTLESS = frozenset((Transport.RAW, Transport.ICMP, Transport.ICMPV6, Transport.PACKET))
"""Socket kinds the sampler lists with no ports: raw (the protocol as local port), ping
(`icmp`/`icmpv6`, the echo id as local port) and packet (the ethertype as local port)."""
_KEY = operator.attrgetter("key")
_TRANSPORT = operator.attrgetter("transport")
_WILDCARD_VERSIONS: dict[int, tuple[int, ...]] = {4: (4, 6), 6: (6,)}
"""An IPv4 flow may reach a socket on 0.0.0.0 or (dual-stack) on ::; an IPv6 one only ::."""


@dataclass(frozen=True, slots=True)
class SocketEntry:
    """One socket. `key.remote` is None for listening and unconnected sockets."""

    key: FlowKey
    state: str | None
    direction: Direction
    """`unknown` from the sampler: who initiated a socket is judged from the whole table's
    listeners, in `flows` (`flows.socket_flows`, `flows.attribution.infer_direction`)."""
    process: ProcessRef | None = None
    inode: int | None = None
    uid: int | None = None
    bytes_sent: int | None = None
    """From tcp_info `bytes_acked` (TCP only, Linux netlink); None where unknown."""
    bytes_received: int | None = None
    """From tcp_info `bytes_received`."""
    segs_out: int | None = None
    segs_in: int | None = None
    interface: str | None = None
    """For an AF_PACKET socket (transport `packet`, the ethertype it receives as local port):
    the interface it is bound to, None when it is bound to none (it sees every interface)."""
    stamp: int = field(default=0, compare=False)
    """A number the sampler gives each entry it makes, never given twice in a process (0: not
    stamped, e.g. built by hand). The sampler hands on an unchanged socket's entry with its
    stamp, so a stage after it finds last sample's answer for the entry by its stamp
    (`flows.socket_flows`); a changed socket is a new entry with a new stamp."""


@dataclass(frozen=True)
class SocketTable:
    """All sockets of one sample, indexed for lookup by endpoint."""

    taken_at: float
    entries: tuple[SocketEntry, ...]
    _by_pair: dict[tuple[Transport, Endpoint, Endpoint | None], SocketEntry] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    _wild: dict[tuple[Transport, int, int], SocketEntry] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    """(transport, IP version, port) -> the socket bound to that version's wildcard address."""
    _pids: frozenset[int] | None = field(default=None, init=False, repr=False, compare=False)
    _portless: tuple[SocketEntry, ...] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def owner_pids(self) -> frozenset[int]:
        """The pids owning sockets in this table (computed on first use)."""
        pids = self._pids
        if pids is None:
            pids = frozenset(e.process.pid for e in self.entries if e.process is not None)
            object.__setattr__(self, "_pids", pids)
        return pids

    def portless(self) -> tuple[SocketEntry, ...]:
        """The raw, ping and packet sockets: those a flow is paired with by protocol, echo id
        or interface rather than by its ports (`flows.raw_pairing`). Found on first use, in C:
        a busy table has tens of thousands of TCP sockets and a handful of these."""
        found = self._portless
        if found is None:
            kinds = map(_TRANSPORT, map(_KEY, self.entries))
            found = tuple(itertools.compress(self.entries, map(PORTLESS.__contains__, kinds)))
            object.__setattr__(self, "_portless", found)
        return found

    def _index(self) -> dict[tuple[Transport, Endpoint, Endpoint | None], SocketEntry]:
        """Index entries by (transport, local, remote) on first lookup, not per sample:
        hashing 20,000 keys costs more than the sample itself when nobody looks up."""
        index = self._by_pair
        if index is None:
            index = {}
            wild: dict[tuple[Transport, int, int], SocketEntry] = {}
            for e in self.entries:
                key = e.key
                index.setdefault((key.transport, key.local, key.remote), e)
                if key.remote is None and key.local.ip in _UNSPECIFIED:
                    wild.setdefault((key.transport, key.local.ip.version, key.local.port), e)
            object.__setattr__(self, "_by_pair", index)
            object.__setattr__(self, "_wild", wild)
        return index

    def lookup(
        self, transport: Transport, local: Endpoint, remote: Endpoint | None
    ) -> SocketEntry | None:
        """Find the socket for a flow: exact pair first, then an unconnected/listening socket
        on the local endpoint, then one bound to the wildcard address on the same port."""
        idx = self._index()
        hit = idx.get((transport, local, remote))
        if hit is not None:
            return hit
        hit = idx.get((transport, local, None))
        if hit is not None:
            return hit
        wild = self._wild
        assert wild is not None  # noqa: S101  # built with the index
        for version in _WILDCARD_VERSIONS[local.ip.version]:
            hit = wild.get((transport, version, local.port))
            if hit is not None:
                return hit
        return None
