"""Flows without ports paired with raw, ping and packet sockets (pure; flows.raw_pairing).

Each test builds the socket table the sampler would list (raw sockets with their protocol as
local port, ping sockets with their echo id, packet sockets with their ethertype and bound
interface) and the packet flow capture would make, and asks `attribute` for the owner.
"""

from __future__ import annotations

import struct

from netwatch.flows.attribution import attribute
from netwatch.flows.table import FlowTable, echo_id
from netwatch.model import (
    Attribution,
    Direction,
    Endpoint,
    FlowKey,
    PacketMeta,
    ProcessRef,
    SocketEntry,
    SocketTable,
    Transport,
    parse_ip,
)
from tests.builders import T0, make_process

HERE, PEER = "192.0.2.1", "198.51.100.7"
HERE6, PEER6 = "2001:db8::1", "2001:db8::7"
LOCAL = frozenset({parse_ip(HERE), parse_ip(HERE6)})
PINGER = make_process("rawpinger", pid=501)
OTHER = make_process("monitor", pid=502)
NETWATCH = make_process("netwatch", pid=999)


def ep(ip: str, port: int = 0) -> Endpoint:
    return Endpoint(parse_ip(ip), port)


def raw(
    proto: int,
    proc: ProcessRef | None,
    bound: str = "0.0.0.0",
    peer: str | None = None,
    transport: Transport = Transport.RAW,
) -> SocketEntry:
    """A raw socket (or, with `transport` icmp/icmpv6, a ping socket whose id is `proto`)."""
    key = FlowKey(transport, ep(bound, proto), None if peer is None else ep(peer))
    return SocketEntry(key=key, state=None, direction=Direction.UNKNOWN, process=proc, inode=7)


def packet(
    proc: ProcessRef | None, ethertype: int = 3, interface: str | None = None
) -> SocketEntry:
    key = FlowKey(Transport.PACKET, ep("0.0.0.0", ethertype), None)
    return SocketEntry(
        key=key, state=None, direction=Direction.UNKNOWN, process=proc, interface=interface
    )


def table(*entries: SocketEntry) -> SocketTable:
    return SocketTable(taken_at=T0, entries=entries)


def icmp_echo(ident: int, v6: bool = False) -> bytes:
    return struct.pack("!BBHHH", 128 if v6 else 8, 0, 0, ident, 1) + b"x" * 56


def flow(
    proto: int,
    payload: bytes = b"",
    src: str = HERE,
    dst: str = PEER,
    sport: int = 0,
    dport: int = 0,
    interface: str | None = "veth0",
):
    meta = PacketMeta(
        T0,
        Transport.from_ip_proto(proto),
        ep(src, sport),
        ep(dst, dport),
        20 + len(payload),
        payload,
        ip_proto=proto,
        interface=interface,
    )
    return FlowTable().ingest(meta)


def owner_of(state, tab: SocketTable, own: frozenset[int] = frozenset()):
    return attribute(state, tab, LOCAL, None, own)


# ------------------------------------------------------------------ ICMP and other protocols


def test_icmp_echo_over_the_one_raw_icmp_socket_is_a_guess() -> None:
    got = owner_of(flow(1, icmp_echo(4321)), table(raw(1, PINGER)))
    assert (got.process, got.attribution, got.local_is_initiator) == (
        PINGER,
        Attribution.GUESSED,
        True,
    )


def test_ping_socket_whose_port_is_the_echo_id_is_exact() -> None:
    state = flow(1, icmp_echo(4321))
    tab = table(
        raw(1, OTHER),  # could carry it, but the kernel wrote id 4321 for the ping socket
        raw(77, OTHER, transport=Transport.ICMP),  # another ping socket
        raw(4321, PINGER, transport=Transport.ICMP),
    )
    got = owner_of(state, tab)
    assert (got.process, got.attribution) == (PINGER, Attribution.SOCKET)


def test_icmpv6_ping_socket_and_families_kept_apart() -> None:
    state = flow(58, icmp_echo(9, v6=True), src=HERE6, dst=PEER6)
    v4_raw = raw(58, OTHER)  # an IPv4 socket cannot carry an IPv6 flow
    v6_ping = raw(9, PINGER, bound="::", transport=Transport.ICMPV6)
    got = owner_of(state, table(v4_raw, v6_ping))
    assert (got.process, got.attribution) == (PINGER, Attribution.SOCKET)
    assert owner_of(state, table(v4_raw)).process is None


def test_raw_socket_bound_elsewhere_or_connected_elsewhere_is_no_candidate() -> None:
    state = flow(253, b"data")
    assert owner_of(state, table(raw(253, PINGER, bound="192.0.2.99"))).process is None
    assert owner_of(state, table(raw(253, PINGER, peer="203.0.113.5"))).process is None
    assert owner_of(state, table(raw(254, PINGER))).process is None


def test_raw_socket_bound_and_connected_to_the_flow_alone_is_exact() -> None:
    got = owner_of(flow(253, b"data"), table(raw(253, PINGER, bound=HERE, peer=PEER)))
    assert (got.process, got.attribution) == (PINGER, Attribution.SOCKET)


def test_protocol_253_with_candidates_of_two_processes_stays_unknown() -> None:
    state = flow(253, b"data")
    assert owner_of(state, table(raw(253, PINGER), raw(253, OTHER))).process is None
    # Two sockets of the one process: that process, still a guess.
    got = owner_of(state, table(raw(253, PINGER), raw(253, PINGER, bound=HERE)))
    assert (got.process, got.attribution) == (PINGER, Attribution.GUESSED)
    # A candidate whose owner is hidden (another user, no privileges): no answer.
    assert owner_of(state, table(raw(253, PINGER), raw(253, None))).process is None


def test_inbound_echo_the_kernel_answers_is_not_the_raw_sockets() -> None:
    # The peer pings us: the kernel replies; a raw ICMP socket only watches.
    state = flow(1, icmp_echo(5), src=PEER, dst=HERE)
    got = owner_of(state, table(raw(1, OTHER)))
    assert got.process is None and got.local_is_initiator is False


def test_forwarded_flow_is_never_paired() -> None:
    state = flow(1, icmp_echo(5), src="198.51.100.20", dst=PEER)
    assert owner_of(state, table(raw(1, PINGER), packet(PINGER, 0, "veth0"))).process is None


# ------------------------------------------------------------------ packet sockets


def test_udp_frames_on_the_interface_of_the_one_bound_packet_socket() -> None:
    state = flow(17, b"payload", sport=40000, dport=9999)
    tab = table(packet(NETWATCH), packet(PINGER, 0, "veth0"), packet(OTHER, 3, "eth9"))
    got = owner_of(state, tab, frozenset({NETWATCH.pid}))
    assert (got.process, got.attribution, got.local_is_initiator) == (
        PINGER,
        Attribution.GUESSED,
        True,
    )


def test_unbound_packet_socket_only_when_none_is_bound_and_never_netwatchs_own() -> None:
    state = flow(17, b"payload", sport=40000, dport=9999)
    own = frozenset({NETWATCH.pid})
    assert owner_of(state, table(packet(NETWATCH)), own).process is None
    got = owner_of(state, table(packet(NETWATCH), packet(PINGER, 0)), own)
    assert (got.process, got.attribution) == (PINGER, Attribution.GUESSED)
    # An unbound socket of another ethertype (ARP) does not see the flow.
    assert owner_of(state, table(packet(PINGER, 0x0806)), own).process is None
    # Two processes that could each have written it: unknown.
    assert owner_of(state, table(packet(PINGER, 0x0800), packet(OTHER, 3)), own).process is None
    # One bound to the flow's interface wins over the unbound ones.
    got = owner_of(state, table(packet(OTHER, 3), packet(PINGER, 0, "veth0")), own)
    assert got.process == PINGER


def test_packet_guess_needs_an_interface_and_a_flow_started_here() -> None:
    tab = table(packet(PINGER, 0, "veth0"))
    assert owner_of(flow(17, b"p", sport=4000, dport=9999, interface=None), tab).process is None
    inbound = flow(17, b"p", src=PEER, dst=HERE, sport=4000, dport=9999)
    assert owner_of(inbound, tab).process is None


def test_a_socket_found_later_replaces_the_guess_and_a_guess_outlives_its_socket() -> None:
    state = flow(17, b"payload", sport=40000, dport=9999)
    guess = owner_of(state, table(packet(PINGER, 0, "veth0")))
    FlowTable.own(state, guess)
    assert owner_of(state, table()) is guess  # the packet socket closed: the guess stays
    udp = SocketEntry(
        key=FlowKey(Transport.UDP, ep(HERE, 40000), ep(PEER, 9999)),
        state="ESTABLISHED",
        direction=Direction.UNKNOWN,
        process=OTHER,
    )
    exact = owner_of(state, table(udp, packet(PINGER, 0, "veth0")))
    assert (exact.process, exact.attribution) == (OTHER, Attribution.SOCKET)


def test_echo_id_read_from_echo_messages_only() -> None:
    assert echo_id(1, icmp_echo(0xBEEF)) == 0xBEEF
    assert echo_id(58, icmp_echo(7, v6=True)) == 7
    assert echo_id(1, struct.pack("!BBHHH", 3, 3, 0, 1, 2)) is None  # unreachable
    assert echo_id(1, b"\x08\x00") is None
    assert echo_id(17, icmp_echo(1)) is None
    assert flow(1, icmp_echo(31)).echo_id == 31


# ------------------------------------------------------------------ across the privilege split


def test_portless_sockets_cross_the_collector_channel_with_their_interface() -> None:
    """The daemon's analyzer pairs from the table the collector sent: a packet socket's
    bound interface must survive the channel (an eleventh field), and the pairing on the
    decoded table gives what it gives on the sampler's."""
    from netwatch.sources.channel import frame, unframe
    from netwatch.sources.collector import TableDiff
    from netwatch.sources.remote import RemoteSockets

    sent = table(
        packet(NETWATCH),
        SocketEntry(
            key=FlowKey(Transport.PACKET, ep("0.0.0.0", 0), None),
            state=None,
            direction=Direction.UNKNOWN,
            process=PINGER,
            inode=11,
            interface="veth0",
        ),
        raw(253, PINGER),
    )
    diff, remote = TableDiff(), RemoteSockets(None)  # type: ignore[arg-type]  # no link needed
    got = remote._decode(unframe(frame(diff.message(sent))))
    assert sorted(e.interface or "" for e in got.portless()) == ["", "", "veth0"]
    state = flow(17, b"payload", sport=40000, dport=9999)
    assert owner_of(state, got, frozenset({NETWATCH.pid})).process == PINGER
    assert owner_of(flow(253, b"x"), got).process == PINGER


# ------------------------------------------------------------------ echo ids over a flow's life


def test_ping_pairing_stays_socket_while_the_socket_lives_then_cached() -> None:
    state = flow(1, icmp_echo(4321))
    tab = table(raw(4321, PINGER, transport=Transport.ICMP))
    first = owner_of(state, tab)
    FlowTable.own(state, first)
    assert owner_of(state, tab) is first  # next tick, same socket: unchanged, `socket`
    gone = owner_of(state, table())
    assert (gone.process, gone.attribution) == (PINGER, Attribution.CACHED)


def test_ping_socket_is_no_candidate_for_a_flow_without_its_echo() -> None:
    # Neighbour solicitation to a multicast group: the kernel's, not the ping program's.
    ns = struct.pack("!BBHI", 135, 0, 0, 0) + parse_ip(PEER6).packed
    state = flow(58, ns, src=HERE6, dst="ff02::1:ff00:7")
    tab = table(raw(77, PINGER, bound="::", transport=Transport.ICMPV6), raw(58, OTHER, bound="::"))
    assert owner_of(state, tab).process is None


def test_ipv6_flow_opened_by_a_neighbour_advertisement_is_still_ours_and_paired() -> None:
    """Over IPv6 the peer's neighbour advertisement is the first packet of the flow when
    the cache is cold; the echo id comes with the next message."""
    from netwatch.pipeline.offline import default_inspector

    inspect, _ = default_inspector()
    flows = FlowTable(inspect)
    na = struct.pack("!BBHI", 136, 0, 0, 0x60000000) + parse_ip(PEER6).packed
    for src, dst, msg in ((PEER6, HERE6, na), (HERE6, PEER6, icmp_echo(9, v6=True))):
        state = flows.ingest(
            PacketMeta(T0, Transport.ICMPV6, ep(src), ep(dst), 40 + len(msg), msg, ip_proto=58)
        )
    assert state.initiator == ep(HERE6) and state.echo_id == 9
    got = owner_of(state, table(raw(9, PINGER, bound="::", transport=Transport.ICMPV6)))
    assert (got.process, got.attribution, got.local_is_initiator) == (
        PINGER,
        Attribution.SOCKET,
        True,
    )


def test_ipproto_raw_sender_is_asked_before_packet_sockets() -> None:
    state = flow(17, b"payload", sport=40000, dport=9999)
    hdrincl = raw(255, PINGER)
    got = owner_of(state, table(packet(OTHER, 3, "veth0"), hdrincl))
    assert (got.process, got.attribution) == (PINGER, Attribution.GUESSED)
    # Two processes with such sockets: no answer, and no falling back to packet sockets.
    both = table(packet(OTHER, 3, "veth0"), hdrincl, raw(255, OTHER))
    assert owner_of(state, both).process is None
    # Bound to another address of this host: it cannot have sent it.
    assert owner_of(state, table(raw(255, PINGER, bound="192.0.2.99"))).process is None
    # Not for a flow the peer started.
    inbound = flow(17, b"p", src=PEER, dst=HERE, sport=4000, dport=9999)
    assert owner_of(inbound, table(hdrincl)).process is None


# ------------------------------------------------------------------ when a guess is made


def test_no_guess_from_a_table_older_than_the_flow_or_long_after_it_went_quiet() -> None:
    from netwatch.flows.raw_pairing import RECENT

    state = flow(253, b"data")
    candidates = (raw(253, PINGER),)
    before = SocketTable(taken_at=T0 - 0.5, entries=candidates)  # sampled before it began
    assert owner_of(state, before).process is None
    quiet = SocketTable(taken_at=T0 + RECENT + 1, entries=candidates)  # sender may be gone
    assert owner_of(state, quiet).process is None
    assert owner_of(state, SocketTable(taken_at=T0 + RECENT, entries=candidates)).process
    # An exact answer needs no such care: the kernel wrote the echo id.
    ping = flow(1, icmp_echo(4321))
    exact = SocketTable(taken_at=T0 - 0.5, entries=(raw(4321, PINGER, transport=Transport.ICMP),))
    assert owner_of(ping, exact).attribution is Attribution.SOCKET


def test_a_guess_is_not_taken_over_by_the_sockets_left_when_its_sender_exits() -> None:
    state = flow(17, b"payload", sport=40000, dport=9999)
    own = frozenset({NETWATCH.pid})
    guess = owner_of(state, table(packet(PINGER, 0, "veth0"), packet(OTHER, 3)), own)
    assert guess.process == PINGER
    FlowTable.own(state, guess)
    # The injector exited; a sniffer's unbound socket is all that is left.
    assert owner_of(state, table(packet(OTHER, 3)), own) is guess


def test_once_contested_no_guess_is_made_when_one_candidate_exits() -> None:
    state = flow(17, b"payload", sport=40000, dport=9999)
    own = frozenset({NETWATCH.pid})
    first = owner_of(state, table(packet(PINGER, 0x0800), packet(OTHER, 3)), own)
    assert first.process is None and first.contested and first.local_is_initiator is True
    FlowTable.own(state, first)
    # The injector exited; the sniffer's socket alone must not inherit its flow.
    assert owner_of(state, table(packet(OTHER, 3)), own) is first
    # An exact answer still comes through.
    udp = SocketEntry(
        key=FlowKey(Transport.UDP, ep(HERE, 40000), ep(PEER, 9999)),
        state="ESTABLISHED",
        direction=Direction.UNKNOWN,
        process=PINGER,
    )
    assert owner_of(state, table(udp, packet(OTHER, 3)), own).process == PINGER
    # Likewise for raw sockets of one protocol.
    raw_flow = flow(253, b"data")
    contested = owner_of(raw_flow, table(raw(253, PINGER), raw(253, OTHER)))
    FlowTable.own(raw_flow, contested)
    assert contested.contested and owner_of(raw_flow, table(raw(253, OTHER))) is contested


def test_an_owner_not_known_yet_is_waited_for_not_contested() -> None:
    # A new socket whose owner the sample did not find yet (or a hidden one): no answer,
    # and no other program is guessed in its place, but the flow is not given up on.
    state = flow(253, b"data")
    wait = owner_of(state, table(raw(253, None), packet(OTHER, 3)))
    assert wait.process is None and not wait.contested
    FlowTable.own(state, wait)
    got = owner_of(state, table(raw(253, PINGER), packet(OTHER, 3)))
    assert (got.process, got.attribution) == (PINGER, Attribution.GUESSED)


def test_a_send_only_packet_socket_is_preferred_to_sniffers() -> None:
    state = flow(17, b"payload", sport=40000, dport=9999)
    sniffer = packet(OTHER, 3, "veth0")  # tcpdump -i veth0
    got = owner_of(state, table(sniffer, packet(PINGER, 0)))  # an unbound injector
    assert (got.process, got.attribution) == (PINGER, Attribution.GUESSED)
    assert owner_of(state, table(sniffer)).process == OTHER  # alone, the sniffer: a guess
