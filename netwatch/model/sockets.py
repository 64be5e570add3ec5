"""The socket table: every inet socket of one sample, with its owning process.

Produced by `sources.sockets`, consumed by `flows.attribution` (to make socket flows and to
attribute packet flows to processes).
"""

from __future__ import annotations

import ipaddress
import itertools
import operator
from collections.abc import Sequence
from dataclasses import dataclass, field

from netwatch.model.flow import (
    Container,
    Direction,
    Endpoint,
    FlowKey,
    IPAddress,
    ProcessRef,
    Transport,
)

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
    container: Container | None = None
    """The network namespace (container) the socket lives in; None for this host's own.
    Its sockets are listed with sock_diag inside that namespace (`sources.namespaces`)."""
    stamp: int = field(default=0, compare=False)
    """A number the sampler gives each entry it makes, never given twice in a process (0: not
    stamped, e.g. built by hand). The sampler hands on an unchanged socket's entry with its
    stamp, so a stage after it finds last sample's answer for the entry by its stamp
    (`flows.socket_flows`); a changed socket is a new entry with a new stamp."""


ConnectionView = tuple[Transport, Endpoint, Endpoint]
"""(transport, initiator's end, responder's end) of one view of a connection."""


@dataclass(frozen=True)
class SocketTable:
    """All sockets of one sample, indexed for lookup by endpoint.

    The host's own sockets answer `lookup`; sockets of other network namespaces
    (containers, `SocketEntry.container`) answer only `lookup_contained`, so a container's
    listener is never taken for the owner of a host connection on the same port. `nat`
    holds the connections the host translates (conntrack: the original view and the
    translated one), so a flow seen under the host's translated address can be traced back
    to the container's socket.
    """

    taken_at: float
    entries: tuple[SocketEntry, ...]
    nat: tuple[tuple[ConnectionView, ConnectionView], ...] = ()
    """(original, translated) views of each translated connection (`sources.conntrack`)."""
    homes: tuple[tuple[int, tuple[IPAddress, ...]], ...] = ()
    """Each other namespace's own addresses by its inode (`Container.netns`): a container's
    socket bound to the wildcard address serves exactly these (`lookup_contained`)."""
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
    _contained: dict[tuple[Transport, Endpoint, Endpoint | None], SocketEntry] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    _nat: dict[ConnectionView, ConnectionView] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    _homes: dict[IPAddress, int] | None = field(default=None, init=False, repr=False, compare=False)
    """Address -> the namespace that owns it (from `homes`; an address two own is left out)."""
    _contained_wild: dict[tuple[Transport, int, int, int], SocketEntry] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    """(transport, netns, IP version, port) -> a namespace's socket on its wildcard address."""

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
                if e.container is not None:
                    continue  # another namespace's: `lookup_contained`
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

    def has_contained(self) -> bool:
        """Whether the table holds any other namespace's socket (cheap after the first call)."""
        return bool(self._contained_index()) or bool(self.nat)

    def _contained_index(self) -> dict[tuple[Transport, Endpoint, Endpoint | None], SocketEntry]:
        index = self._contained
        if index is None:
            index = {}
            wild: dict[tuple[Transport, int, int, int], SocketEntry] = {}
            for e in self.entries:
                if e.container is not None:
                    key = e.key
                    index.setdefault((key.transport, key.local, key.remote), e)
                    if key.remote is None and key.local.ip in _UNSPECIFIED:
                        at = (key.transport, e.container.netns, key.local.ip.version)
                        wild.setdefault((*at, key.local.port), e)
            object.__setattr__(self, "_contained", index)
            object.__setattr__(self, "_contained_wild", wild)
        return index

    def _home_of(self, ip: IPAddress) -> int | None:
        """The namespace that owns `ip` (one of `homes`), None when none or several do."""
        homes = self._homes
        if homes is None:
            homes = {}
            shared: set[IPAddress] = set()
            for netns, addresses in self.homes:
                for address in addresses:
                    if homes.setdefault(address, netns) != netns:
                        shared.add(address)  # two namespaces with one address: not a home
            for address in shared:
                del homes[address]
            object.__setattr__(self, "_homes", homes)
        return homes.get(ip)

    def lookup_contained(
        self, transport: Transport, local: Endpoint, remote: Endpoint | None
    ) -> SocketEntry | None:
        """`lookup` among other namespaces' sockets: the exact pair, then an unconnected
        socket bound to exactly the local end, then one bound to the wildcard address on
        that port in the namespace that owns the local address (`homes`; a container's UDP
        server on `0.0.0.0:53`). Without its home a wildcard socket answers nothing: any
        flow on port 53 could be taken for that container's."""
        idx = self._contained_index()
        if not idx:
            return None
        hit = idx.get((transport, local, remote)) or idx.get((transport, local, None))
        if hit is not None or not self.homes:
            return hit
        netns = self._home_of(local.ip)
        if netns is None:
            return None
        wild = self._contained_wild
        assert wild is not None  # noqa: S101  # built with the index
        for version in _WILDCARD_VERSIONS[local.ip.version]:
            hit = wild.get((transport, netns, version, local.port))
            if hit is not None:
                return hit
        return None

    def translated(
        self, transport: Transport, ini: Endpoint, resp: Endpoint
    ) -> ConnectionView | None:
        """The other view of a translated connection seen as `ini` -> `resp`: its original
        view for the translated one and the other way round; None when not translated."""
        if not self.nat:
            return None
        index = self._nat
        if index is None:
            index = {}
            for original, translated in self.nat:
                index[translated] = original
                index[original] = translated
            object.__setattr__(self, "_nat", index)
        return index.get((transport, ini, resp))

    def reread(
        self,
        taken_at: float,
        entries: tuple[SocketEntry, ...],
        swapped: Sequence[tuple[SocketEntry, SocketEntry]],
        nat: tuple[tuple[ConnectionView, ConnectionView], ...] = (),
        homes: tuple[tuple[int, tuple[IPAddress, ...]], ...] = (),
    ) -> SocketTable:
        """This table as `entries` at `taken_at` (with `nat`), where each (old, new) of
        `swapped` is a socket read again in place with only its counters changed (same key,
        owner, container, place).

        What this table computed on first use is carried over instead of computed again:
        the lookup indexes (copied in C, the swapped entries put in their old entries'
        slots), the owners' pids, and the translations' index while `nat` is the same.
        Indexing 20,000 sockets hashes each key in Python, which on a tick that re-reads a
        few sockets cost more than the re-reading. `homes` as for `nat`."""
        table = SocketTable(taken_at=taken_at, entries=entries, nat=nat, homes=homes)
        index, wild, contained = self._by_pair, self._wild, self._contained
        if index is not None and wild is not None:
            index, wild = dict(index), dict(wild)
            for old, new in swapped:
                k = old.key
                pair = (k.transport, k.local, k.remote)
                if index.get(pair) is old:
                    index[pair] = new
                if k.remote is None:
                    at = (k.transport, k.local.ip.version, k.local.port)
                    if wild.get(at) is old:
                        wild[at] = new
            object.__setattr__(table, "_by_pair", index)
            object.__setattr__(table, "_wild", wild)
        contained_wild = self._contained_wild
        if contained is not None and contained_wild is not None:
            contained, contained_wild = dict(contained), dict(contained_wild)
            for old, new in swapped:
                k = old.key
                pair = (k.transport, k.local, k.remote)
                if contained.get(pair) is old:
                    contained[pair] = new
                if k.remote is None and old.container is not None:
                    home = (k.transport, old.container.netns, k.local.ip.version, k.local.port)
                    if contained_wild.get(home) is old:
                        contained_wild[home] = new
            object.__setattr__(table, "_contained", contained)
            object.__setattr__(table, "_contained_wild", contained_wild)
        if nat is self.nat:
            object.__setattr__(table, "_nat", self._nat)
        if homes is self.homes:
            object.__setattr__(table, "_homes", self._homes)
        object.__setattr__(table, "_pids", self._pids)
        return table
