"""Owners for flows no port names: pairing with raw, ping and packet sockets (pure).

A TCP or UDP flow is joined to its socket by its two endpoints. ICMP, ICMPv6, IP protocol
253 and other protocols without ports, and frames a program writes itself to an AF_PACKET
socket, have no such socket. What the sampler lists instead (`SocketTable.portless`):

* a ping socket (`SOCK_DGRAM`, ICMP or ICMPv6; /proc/net/icmp, icmp6): its local "port" is
  the echo identifier the kernel writes into every echo request it sends, so a flow whose
  echo id is that port and whose local address the socket is bound to (or the wildcard) is
  paired exactly: attribution `socket`;
* a raw socket (/proc/net/raw, raw6): its local "port" is its IP protocol; it sees every
  packet of that protocol to its bound address (or every address), whoever sent it: the
  kernel's own ICMP replies and errors too. A flow of that protocol is paired with it as a
  guess (`guessed`), unless the socket is bound to this flow's local address and connected
  to its peer and is the only candidate (`socket`);
* a raw socket of protocol 255 (IPPROTO_RAW) writes whole IP packets of any protocol and
  receives nothing: for a flow this host started that nothing else names, it is a guess
  (`guessed`), asked before packet sockets since it cannot be a sniffer;
* a packet socket (/proc/net/packet): no address at all, only the interface it is bound to
  (or none) and the ethertype it receives. A flow this host started on an interface is
  paired with the packet sockets that only send (protocol 0) bound to it or to none, else
  those bound to that interface, else the unbound ones that see it (every ethertype or the
  flow's). Always `guessed`:
  the kernel records no sender for a frame written to a packet socket (it is captured like
  any other outgoing frame), and a passive sniffer's socket looks the same as an injector's.
  netwatch's own capture sockets (`own_pids`) are never candidates.

When the candidates belong to more than one process the flow stays unknown, for good
(`FlowOwner.contested`): two programs that could each have sent it are no answer, and when
one exits the other must not inherit it. A candidate whose owner is not known (a socket the
owner cache has not found yet, or another user's without privileges) leaves the flow
unknown for now. A guess is made only from a table taken after the flow began and while it
was still sending (`RECENT`), and once made it is replaced only by an exact answer, never
by another guess: when its sender exits, the sockets left (a sniffer's) would otherwise
take the flow over. Candidates of one process (one program with two raw sockets) give that
process. Only a flow with an address of this host is paired, on that side (a forwarded or
bridged flow has no process here).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from netwatch.flows.table import FlowOwner, FlowState
from netwatch.model import (
    Attribution,
    Endpoint,
    IPAddress,
    ProcessRef,
    SocketEntry,
    SocketTable,
    Transport,
)

IPPROTO_RAW = 255
"""A raw socket of this protocol sends whole IP packets of any protocol and receives none
(raw(7)); scapy's `send` writes through one."""
ETH_P_ALL = 0x0003
"""A packet socket of this protocol receives every frame (linux/if_ether.h)."""
_ETHERTYPES = {4: 0x0800, 6: 0x86DD}
"""The ethertype of an IPv4 and an IPv6 packet (linux/if_ether.h ETH_P_IP, ETH_P_IPV6)."""
_PING = {1: Transport.ICMP, 58: Transport.ICMPV6}
"""IP protocol -> the transport the sampler lists that protocol's ping sockets as."""
RECENT = 2.0
"""Seconds: a flow whose last packet is older than this when the table was taken is not
given a new guess (its sender may have exited, leaving other programs' sockets behind)."""
_PORTED = frozenset((6, 17))
Verdict = Literal["none", "wait", "contested", "found"]
"""TCP and UDP flows are joined to their sockets by port; raw sockets are not asked."""


def pair_portless(
    state: FlowState,
    table: SocketTable,
    local: frozenset[IPAddress],
    own_pids: frozenset[int] = frozenset(),
    guess: bool = True,
) -> FlowOwner | None:
    """The owner of a flow paired with a ping, raw or packet socket, or None.

    Tries this host's side (initiator first, as `flows.attribution.attribute` does) with
    the ping and raw sockets of the flow's IP protocol; then, for a flow this host started,
    the IPPROTO_RAW sockets (send-only, any protocol), and when there are none the packet
    sockets of the interface the flow was seen on. See the module docstring for what counts
    as exact. Without `guess` only an exact answer is given. Candidates of several processes
    give an owner with no process that is `contested`, so that no later guess is made.
    """
    sockets = table.portless()
    if not sockets:
        return None
    ini, resp = state.initiator, state.responder
    proto = state.ip_proto
    # A guess needs a table that can hold the sender's socket: one taken after the flow
    # began (else wait a tick) and while it was still sending (else its sender may be gone
    # and the socket left is only a sniffer's).
    fresh = guess and state.first_seen <= table.taken_at <= state.last_seen + RECENT
    contested: bool | None = None
    answered = False
    if proto not in _PORTED:
        for here, there, initiator in ((ini, resp, True), (resp, ini, False)):
            if here.ip not in local:
                continue
            # The kernel answers echo requests, sends ICMP errors and neighbour discovery
            # itself: a raw ICMP socket is a candidate only for a unicast flow this host
            # started (a ping socket's echo id is exact either way).
            raw = proto not in _PING or (initiator and not there.ip.is_multicast)
            verdict, process, attribution = _by_protocol(
                sockets, proto, state.echo_id, here, there, raw
            )
            if verdict == "none":
                continue
            if process is not None and (fresh or attribution is Attribution.SOCKET):
                return FlowOwner(process, attribution, initiator)
            if verdict == "contested" and fresh:
                contested = initiator
            answered = True  # or its candidates' owners are not known yet: next tick
            break
    if not answered and fresh and ini.ip in local:
        # What a program writes whole leaves from here: this host started it.
        # IPPROTO_RAW sockets only send (whole IP packets, any protocol): a sender for
        # sure, where a packet socket may be a sniffer; so they are asked first.
        hdrincl = [
            e
            for e in sockets
            if e.key.transport is Transport.RAW
            and e.key.local.port == IPPROTO_RAW
            and _reaches(e, ini, resp)
        ]
        candidates = hdrincl
        if not hdrincl and state.interface is not None:
            candidates = _by_interface(sockets, state.interface, ini, own_pids)
        owner, disagree = _one_owner(candidates)
        if owner is not None:
            return FlowOwner(owner, Attribution.GUESSED, True)
        if disagree:
            contested = True
    if contested is None:
        return None
    return FlowOwner(None, Attribution.UNKNOWN, contested, contested=True)


def _by_protocol(
    sockets: Iterable[SocketEntry],
    proto: int,
    echo: int | None,
    here: Endpoint,
    there: Endpoint,
    raw: bool,
) -> tuple[Verdict, ProcessRef | None, Attribution]:
    """The ping or (when `raw`) raw socket that carries protocol `proto` between `here` and
    `there`, with how sure that is; `none` when no socket could, `wait` when an owner is
    not known (yet), `contested` when they are several processes."""
    ping = _PING.get(proto)
    candidates: list[SocketEntry] = []
    for e in sockets:
        kind = e.key.transport
        if kind is Transport.RAW:
            if not raw or e.key.local.port != proto:
                continue
        elif kind is ping:
            if echo is None or e.key.local.port != echo:
                continue  # a ping socket sends echo requests only, each with its id
        else:
            continue
        if not _reaches(e, here, there):
            continue
        if kind is ping and e.process is not None:
            return "found", e.process, Attribution.SOCKET  # the kernel wrote this id: exact
        candidates.append(e)
    if not candidates:
        return "none", None, Attribution.UNKNOWN
    process, disagree = _one_owner(candidates)
    if process is None:
        return ("contested" if disagree else "wait"), None, Attribution.UNKNOWN
    exact = (
        len(candidates) == 1
        and candidates[0].key.local.ip == here.ip
        and candidates[0].key.remote is not None
        and candidates[0].key.remote.ip == there.ip
    )
    return "found", process, Attribution.SOCKET if exact else Attribution.GUESSED


def _reaches(entry: SocketEntry, here: Endpoint, there: Endpoint) -> bool:
    """A raw or ping socket sees this flow: same IP version, bound to `here` or to no address,
    and connected to `there` or to nothing."""
    bound = entry.key.local.ip
    if bound.version != here.ip.version:
        return False
    if bound != here.ip and bound.packed.count(0) != len(bound.packed):
        return False
    peer = entry.key.remote
    return peer is None or peer.ip == there.ip or peer.ip.packed.count(0) == len(peer.ip.packed)


def _by_interface(
    sockets: Iterable[SocketEntry], interface: str, here: Endpoint, own_pids: frozenset[int]
) -> list[SocketEntry]:
    """The packet sockets that could have written this flow's frames on `interface`: those
    that only send (protocol 0: they receive nothing, so they are no sniffer's), else those
    bound to it, else the unbound ones that see its ethertype."""
    bound: list[SocketEntry] = []
    unbound: list[SocketEntry] = []
    ethertype = _ETHERTYPES[here.ip.version]
    for e in sockets:
        if e.key.transport is not Transport.PACKET:
            continue
        if e.process is not None and e.process.pid in own_pids:
            continue  # netwatch's own capture and start-watcher sockets
        if e.interface == interface:
            bound.append(e)
        elif e.interface is None and e.key.local.port in (ETH_P_ALL, ethertype, 0):
            unbound.append(e)
    senders = [e for e in (*bound, *unbound) if e.key.local.port == 0]
    return senders or bound or unbound


def _one_owner(candidates: list[SocketEntry]) -> tuple[ProcessRef | None, bool]:
    """(the process that owns every candidate, whether two known owners disagree).

    No owner when there is no candidate, when they disagree, or when one's owner is not
    known: a new socket's owner may be found by the next sample, a hidden one never, and
    neither is a reason to guess another process or to give up for good.
    """
    owners = {(e.process.pid, e.process.create_time): e.process for e in candidates if e.process}
    if len(owners) > 1:
        return None, True
    if not owners or any(e.process is None for e in candidates):
        return None, False
    return next(iter(owners.values())), False
