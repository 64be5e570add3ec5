"""Socket table -> flows, who initiated each socket, and the join of packet flows to processes.

Pure: takes socket entries (already sampled by `sources`) and returns model objects. The
join lives here, not in the display (bandwhich keeps it in its UI state; we do not).

Direction is decided from the table itself: a listening TCP socket (or an unconnected UDP
socket, which `ss -l` also counts as listening) is `listen`; a connected socket whose local
address and port is one something listens on was accepted, so the peer initiated it
(`inbound`); any other connected socket was initiated here (`outbound`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace

from netwatch.flows.raw_pairing import pair_portless
from netwatch.flows.serials import SerialOf
from netwatch.flows.table import FlowOwner, FlowState, FlowTable
from netwatch.model import (
    Attribution,
    Direction,
    Endpoint,
    Flow,
    FlowKey,
    IPAddress,
    ProcessRef,
    SocketEntry,
    SocketTable,
    Transport,
)

_ANY4 = ipaddress.IPv4Address(0)
_ANY6 = ipaddress.IPv6Address(0)
_PORTED = (Transport.TCP, Transport.UDP, Transport.SCTP)

Listeners = Mapping[tuple[Transport, int], frozenset[IPAddress]]
"""(transport, port) -> addresses listened on (a wildcard address covers every address)."""
AllListeners = tuple[Listeners, Mapping[int, Listeners]]
"""This host's listeners, and each other network namespace's (container's) by its inode: a
socket is judged by its own namespace's listeners only."""
_NO_LISTENERS: Listeners = {}


def flow_from_socket(
    entry: SocketEntry,
    now: float,
    first_seen: float | None = None,
    open_ended: bool = False,
    direction: Direction | None = None,
) -> Flow:
    """Turn one socket into a flow as seen from its local process.

    `open_ended` leaves `last_seen` None (the live engine: the socket is open as of the
    snapshot, whose `taken_at` says when), so an unchanged socket's flow keeps its values
    (and its revisions). `direction`, when given, replaces the entry's (the engine judges it
    without copying the entry).
    """
    return Flow(
        key=entry.key,
        direction=entry.direction if direction is None else direction,
        state=entry.state,
        process=entry.process,
        attribution=Attribution.SOCKET if entry.process else Attribution.UNKNOWN,
        first_seen=first_seen,
        last_seen=None if open_ended else now,
        bytes_sent=entry.bytes_sent,
        bytes_received=entry.bytes_received,
        packets_sent=entry.segs_out,
        packets_received=entry.segs_in,
        container=entry.container,
    )


def flows_from_sockets(table: SocketTable, now: float | None = None) -> list[Flow]:
    """One flow per socket of the table (listening sockets included, as `listen` flows).

    Entries whose direction the source left `unknown` get it inferred from the table here.
    """
    at = table.taken_at if now is None else now
    entries: Sequence[SocketEntry] = table.entries
    if any(e.direction is Direction.UNKNOWN and e.key.transport in _PORTED for e in entries):
        entries = assign_directions(entries)
    return [flow_from_socket(e, at) for e in entries]


def is_listening(transport: Transport, state: str | None, remote_known: bool) -> bool:
    """A TCP socket in LISTEN, or an unconnected UDP socket (it receives from anyone)."""
    if remote_known:
        return False
    if transport is Transport.TCP or transport is Transport.SCTP:
        return state == "LISTEN"
    return transport is Transport.UDP


def listeners_of(
    entries: Iterable[SocketEntry],
) -> dict[tuple[Transport, int], frozenset[IPAddress]]:
    """Index this host's listening sockets by (transport, port); another namespace's
    (`SocketEntry.container`) listen there, not here (`all_listeners`)."""
    return listeners_from((e.key, e.state) for e in entries if e.container is None)


def all_listeners(entries: Iterable[SocketEntry]) -> AllListeners:
    """This host's listeners, and each other namespace's: a container listening on
    `0.0.0.0:50000` does not make the host's connection from port 50000 an accepted one."""
    host: list[SocketEntry] = []
    inside: dict[int, list[SocketEntry]] = {}
    for e in entries:
        if e.container is None:
            host.append(e)
        else:
            inside.setdefault(e.container.netns, []).append(e)
    return listeners_of(host), {ns: listeners_from((e.key, e.state) for e in es)
                                for ns, es in inside.items()}  # fmt: skip


def listeners_for(entry: SocketEntry, listeners: AllListeners) -> Listeners:
    """The listeners of the entry's own namespace."""
    c = entry.container
    return listeners[0] if c is None else listeners[1].get(c.netns, _NO_LISTENERS)


def listeners_from(
    sockets: Iterable[tuple[FlowKey, str | None]],
) -> dict[tuple[Transport, int], frozenset[IPAddress]]:
    """`listeners_of` for (key, state) pairs, for sources that classify before building."""
    found: dict[tuple[Transport, int], set[IPAddress]] = {}
    for k, state in sockets:
        if k.remote is None and is_listening(k.transport, state, False):
            found.setdefault((k.transport, k.local.port), set()).add(k.local.ip)
    return {key: frozenset(ips) for key, ips in found.items()}


def infer_direction(key: FlowKey, state: str | None, listeners: Listeners) -> Direction:
    """Who initiated this socket, judged by what else listens on the machine."""
    if key.transport not in _PORTED:
        return Direction.UNKNOWN
    if key.remote is None:
        if is_listening(key.transport, state, False):
            return Direction.LISTEN
        return Direction.UNKNOWN
    if state == "SYN_RECV":
        return Direction.INBOUND
    ips = listeners.get((key.transport, key.local.port))
    if ips is not None and (key.local.ip in ips or _ANY4 in ips or _ANY6 in ips):
        return Direction.INBOUND
    return Direction.OUTBOUND


def assign_directions(entries: Sequence[SocketEntry]) -> list[SocketEntry]:
    """Return the entries with `direction` set by `infer_direction` (unchanged ones reused)."""
    listeners = all_listeners(entries)
    out: list[SocketEntry] = []
    for e in entries:
        d = infer_direction(e.key, e.state, listeners_for(e, listeners))
        out.append(e if d is e.direction else replace(e, direction=d))
    return out


def listening_ports(entries: Iterable[SocketEntry]) -> set[tuple[str, int]]:
    """The (transport, port) pairs something listens on: accepted sockets share them."""
    return {(t.value, port) for t, port in listeners_of(entries)}


def contained_owner(
    table: SocketTable, transport: Transport, ini: Endpoint, resp: Endpoint
) -> tuple[SocketEntry, bool] | None:
    """The socket of another namespace (a container) behind this packet flow, and whether
    it is the initiator's.

    Two views of the flow are tried: its own ends (a container routed through this host)
    and, when the host translates the connection, its other view (`SocketTable.translated`:
    under masquerade the outside view has the host's address, the inside one the
    container's). The initiator's side is tried in both views before the responder's: when
    both ends are namespaces on this machine, the flow is the initiator's, as for the host's
    own sockets; and under masquerade the far end's accepted socket names the host's
    address, which must not win over the container that opened the connection.
    """
    views = [(ini, resp)]
    other = table.translated(transport, ini, resp)
    if other is not None:
        views.append((other[1], other[2]))
    for here, there in views:
        entry = table.lookup_contained(transport, here, there)
        if entry is not None:
            return entry, True
    for here, there in views:
        entry = table.lookup_contained(transport, there, here)
        if entry is not None:
            return entry, False
    return None


ConnectOwner = Callable[[FlowKey], ProcessRef | None]
"""The process caught starting this connection from here, if any (`sources.connect_owners`)."""


def attribute(
    state: FlowState,
    table: SocketTable,
    local: frozenset[IPAddress],
    connect_owner: ConnectOwner | None = None,
    own_pids: frozenset[int] = frozenset(),
) -> FlowOwner:
    """Who owns this packet flow now, and which side is this host; the flow is not changed.

    A process found earlier stays (attribution `cached` once its socket is gone). Otherwise
    the socket table is asked, on each side whose address is this host's, initiator first;
    then `connect_owner` for a connection from here that no sample listed; then the sockets
    of other namespaces (`contained_owner`: a container behind this host, routed or
    translated); then the raw, ping and packet sockets that could carry it
    (`flows.raw_pairing`; packet sockets of the pids in `own_pids`, netwatch's own, are left
    out). A guessed owner is asked again each tick (an exact answer replaces it) and stays
    when nothing better is found. Failing all, the side is still decided when one address is
    this host's. Returns the flow's very `owner` when nothing changed, so its `to_flow` keeps
    last tick's object.
    """
    owner = state.owner
    transport = state.key.transport
    ini, resp = state.initiator, state.responder
    if (
        owner.local_is_initiator is not None
        and owner.process is not None
        and owner.attribution is not Attribution.GUESSED
    ):
        here, there = (ini, resp) if owner.local_is_initiator else (resp, ini)
        if owner.container is not None:
            inside = contained_owner(table, transport, ini, resp)
            if inside is not None and inside[0].process not in (None, owner.process):
                # A better socket than the one first found: the initiator's namespace was
                # listed after the far end's (namespaces are looked for every few seconds).
                better, initiated = inside
                return FlowOwner(
                    better.process, Attribution.SOCKET, initiated, container=better.container
                )
            listed = inside is not None
        else:
            listed = table.lookup(transport, here, there) is not None
        if listed:
            found = Attribution.SOCKET
        elif owner.attribution is Attribution.SOCKET and transport not in _PORTED:
            # Paired exactly with a ping or raw socket, which `lookup` does not find: still
            # `socket` while that pairing still holds.
            again = pair_portless(state, table, local, own_pids)
            if again is not None and again.process == owner.process:
                found = again.attribution
            else:
                found = Attribution.CACHED
        elif owner.attribution is not Attribution.CONNECT:
            found = Attribution.CACHED
        else:
            return owner
        return owner if owner.attribution is found else replace(owner, attribution=found)
    # The initiator's side first, then the responder's (unrolled: every flow, every tick).
    entry = table.lookup(transport, ini, resp) if ini.ip in local else None
    if entry is not None and entry.process is not None:
        return FlowOwner(entry.process, Attribution.SOCKET, True)
    entry = table.lookup(transport, resp, ini) if resp.ip in local else None
    if entry is not None and entry.process is not None:
        return FlowOwner(entry.process, Attribution.SOCKET, False)
    if connect_owner is not None and ini.ip in local:
        proc = connect_owner(FlowKey(transport, ini, resp))
        if proc is not None:
            return FlowOwner(proc, Attribution.CONNECT, True)
    if table.has_contained():
        inside = contained_owner(table, transport, ini, resp)
        if inside is not None and inside[0].process is not None:
            held, initiated = inside
            return FlowOwner(held.process, Attribution.SOCKET, initiated, container=held.container)
    paired = pair_portless(state, table, local, own_pids, not owner.contested)
    if paired is not None and paired.contested and owner.process is not None:
        paired = None  # an earlier guess stands (see below)
    if paired is not None:
        if paired == owner or (
            owner.attribution is Attribution.GUESSED and paired.attribution is owner.attribution
        ):
            return owner  # a guess gives way to an exact answer only (`flows.raw_pairing`)
        return paired
    if owner.process is not None:
        return owner  # an earlier guess whose socket is gone: still the best answer
    if owner.local_is_initiator is None:
        if ini.ip in local:
            return replace(owner, local_is_initiator=True)
        if resp.ip in local:
            return replace(owner, local_is_initiator=False)
    return owner


def attributed_flows(
    states: Iterable[FlowState],
    table: SocketTable,
    local: frozenset[IPAddress],
    connect_owner: ConnectOwner | None = None,
    serial_of: SerialOf | None = None,
    own_pids: frozenset[int] = frozenset(),
) -> list[Flow]:
    """Each packet flow seen from this host, owned by its process (`attribute`); the flow
    table keeps each new owner (`FlowTable.own`), and a new owner moves the flow's
    `rev_facts` (`FlowState.to_flow`, serials from `serial_of`). One loop, for live
    capture's every flow every tick."""
    out: list[Flow] = []
    append = out.append
    for state in states:
        owner = attribute(state, table, local, connect_owner, own_pids)
        if owner is not state.owner:
            FlowTable.own(state, owner)
        here = owner.local_is_initiator
        append(state.to_flow(_initiator_looks_local(state) if here is None else here, serial_of))
    return out


def orient(state: FlowState) -> Flow:
    """A packet flow seen from this host: the side attribution decided, else judged from
    the addresses (a capture file has no sockets; neither end may be ours when traffic is
    forwarded or bridged).

    When the initiator is a global address and the responder is not, the responder is this
    side and the flow is inbound; otherwise the initiator is local and the flow outbound.
    """
    initiator_local = state.owner.local_is_initiator
    if initiator_local is None:
        initiator_local = _initiator_looks_local(state)
    return state.to_flow(initiator_local)


def _initiator_looks_local(state: FlowState) -> bool:
    return not (state.initiator.ip.is_global and not state.responder.ip.is_global)
