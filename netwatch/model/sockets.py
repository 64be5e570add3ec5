"""The socket table: every inet socket of one sample, with its owning process.

Produced by `sources.sockets`, consumed by `flows.attribution` (to make socket flows and to
attribute packet flows to processes).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from netwatch.model.flow import Direction, Endpoint, FlowKey, IPAddress, ProcessRef, Transport

# A socket bound to :: also receives IPv4 (dual stack), whose addresses we keep unmapped.
_WILDCARDS: dict[int, tuple[IPAddress, ...]] = {
    4: (ipaddress.IPv4Address(0), ipaddress.IPv6Address(0)),
    6: (ipaddress.IPv6Address(0),),
}


@dataclass(frozen=True, slots=True)
class SocketEntry:
    """One socket. `key.remote` is None for listening and unconnected sockets."""

    key: FlowKey
    state: str | None
    direction: Direction
    process: ProcessRef | None = None
    inode: int | None = None
    uid: int | None = None
    bytes_sent: int | None = None
    """From tcp_info `bytes_acked` (TCP only, Linux netlink); None where unknown."""
    bytes_received: int | None = None
    """From tcp_info `bytes_received`."""
    segs_out: int | None = None
    segs_in: int | None = None


@dataclass(frozen=True)
class SocketTable:
    """All sockets of one sample, indexed for lookup by endpoint."""

    taken_at: float
    entries: tuple[SocketEntry, ...]
    _by_pair: dict[tuple[Transport, Endpoint, Endpoint | None], SocketEntry] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def _index(self) -> dict[tuple[Transport, Endpoint, Endpoint | None], SocketEntry]:
        """Index entries by (transport, local, remote) on first lookup, not per sample:
        hashing 20,000 keys costs more than the sample itself when nobody looks up."""
        index = self._by_pair
        if index is None:
            index = {}
            for e in self.entries:
                index.setdefault((e.key.transport, e.key.local, e.key.remote), e)
            object.__setattr__(self, "_by_pair", index)
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
        for wildcard in _WILDCARDS[local.ip.version]:
            hit = idx.get((transport, Endpoint(wildcard, local.port), None))
            if hit is not None:
                return hit
        return None
