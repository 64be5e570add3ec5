"""The socket table: every inet socket of one sample, with its owning process.

Produced by `sources.sockets`, consumed by `flows.attribution` (to make socket flows and to
attribute packet flows to processes).
"""

from __future__ import annotations

import ipaddress
import itertools
import operator
from dataclasses import dataclass, field

from netwatch.model.construct import slotted_init
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


@slotted_init
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
    _by_pair: dict[tuple[Transport, Endpoint, Endpoint | None], int] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    """(transport, local, remote) -> the position in `entries` of the socket on that pair.
    Positions, not entries: a table re-read in place (`reread`) has its entries in the same
    places, so it shares this index as it is instead of copying and patching it."""
    _wild: dict[tuple[Transport, int, int], int] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    """(transport, IP version, port) -> the position of the socket bound to that version's
    wildcard address."""
    _pids: frozenset[int] | None = field(default=None, init=False, repr=False, compare=False)
    _portless: tuple[SocketEntry, ...] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    _contained: dict[tuple[Transport, Endpoint, Endpoint | None], int] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    _nat: dict[ConnectionView, ConnectionView] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    _homes: dict[IPAddress, int] | None = field(default=None, init=False, repr=False, compare=False)
    """Address -> the namespace that owns it (from `homes`; an address two own is left out)."""
    _contained_wild: dict[tuple[Transport, int, int, int], int] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    """(transport, netns, IP version, port) -> the position of a namespace's socket on its
    wildcard address."""
    _reread_of: tuple[SocketEntry, ...] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    """For a table made by `reread`: the entries of the table it was re-read from (not that
    table: a chain of tables would stay alive)."""

    @property
    def reread_of(self) -> tuple[SocketEntry, ...] | None:
        """The entries this table was re-read from in place (`reread`), else None: each of
        this table's entries that is not the one at its position there is the same socket
        read again (same key, owner, inode and container; its counters and state may have
        moved). The flow stage then rebuilds just those positions (`flows.socket_flows`)."""
        return self._reread_of

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

    def _index(self) -> dict[tuple[Transport, Endpoint, Endpoint | None], int]:
        """Index entries' positions by (transport, local, remote) on first lookup, not per
        sample: hashing 20,000 keys costs more than the sample itself when nobody looks up."""
        index = self._by_pair
        if index is None:
            index = {}
            wild: dict[tuple[Transport, int, int], int] = {}
            for i, e in enumerate(self.entries):
                if e.container is not None:
                    continue  # another namespace's: `lookup_contained`
                key = e.key
                index.setdefault((key.transport, key.local, key.remote), i)
                if key.remote is None and key.local.ip in _UNSPECIFIED:
                    wild.setdefault((key.transport, key.local.ip.version, key.local.port), i)
            object.__setattr__(self, "_by_pair", index)
            object.__setattr__(self, "_wild", wild)
        return index

    def lookup(
        self, transport: Transport, local: Endpoint, remote: Endpoint | None
    ) -> SocketEntry | None:
        """Find the socket for a flow: exact pair first, then an unconnected/listening socket
        on the local endpoint, then one bound to the wildcard address on the same port."""
        idx = self._index()
        at = idx.get((transport, local, remote))
        if at is None:
            at = idx.get((transport, local, None))
        if at is not None:
            return self.entries[at]
        wild = self._wild
        assert wild is not None  # noqa: S101  # built with the index
        for version in _WILDCARD_VERSIONS[local.ip.version]:
            at = wild.get((transport, version, local.port))
            if at is not None:
                return self.entries[at]
        return None

    def has_contained(self) -> bool:
        """Whether the table holds any other namespace's socket (cheap after the first call)."""
        return bool(self._contained_index()) or bool(self.nat)

    def _contained_index(self) -> dict[tuple[Transport, Endpoint, Endpoint | None], int]:
        index = self._contained
        if index is None:
            index = {}
            wild: dict[tuple[Transport, int, int, int], int] = {}
            for i, e in enumerate(self.entries):
                if e.container is not None:
                    key = e.key
                    index.setdefault((key.transport, key.local, key.remote), i)
                    if key.remote is None and key.local.ip in _UNSPECIFIED:
                        at = (key.transport, e.container.netns, key.local.ip.version)
                        wild.setdefault((*at, key.local.port), i)
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
        at = idx.get((transport, local, remote))
        if at is None:
            at = idx.get((transport, local, None))
        if at is not None:
            return self.entries[at]
        if not self.homes:
            return None
        netns = self._home_of(local.ip)
        if netns is None:
            return None
        wild = self._contained_wild
        assert wild is not None  # noqa: S101  # built with the index
        for version in _WILDCARD_VERSIONS[local.ip.version]:
            at = wild.get((transport, netns, version, local.port))
            if at is not None:
                return self.entries[at]
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
        nat: tuple[tuple[ConnectionView, ConnectionView], ...] = (),
        homes: tuple[tuple[int, tuple[IPAddress, ...]], ...] = (),
    ) -> SocketTable:
        """This table as `entries` at `taken_at` (with `nat`), where every entry that is
        not this table's own is a socket read again in place: only its counters changed
        (same key, owner, container) and it sits where its old entry sat.

        What this table computed on first use is carried over instead of computed again:
        the lookup indexes (positions, so shared as they are), the owners' pids, and the
        translations' index while `nat` is the same. Indexing 20,000 sockets hashes each
        key in Python, which on a tick that re-reads a few sockets cost more than the
        re-reading (and so did patching the copied indexes: two key hashes per re-read
        socket). `homes` as for `nat`."""
        table = SocketTable(taken_at=taken_at, entries=entries, nat=nat, homes=homes)
        # The indexes hold positions, and each re-read entry is in its old entry's place:
        # they are this table's as they are (never changed once built, so shared).
        for name in ("_by_pair", "_wild", "_contained", "_contained_wild"):
            object.__setattr__(table, name, getattr(self, name))
        if nat is self.nat:
            object.__setattr__(table, "_nat", self._nat)
        if homes is self.homes:
            object.__setattr__(table, "_homes", self._homes)
        object.__setattr__(table, "_pids", self._pids)
        object.__setattr__(table, "_reread_of", self.entries)
        return table
