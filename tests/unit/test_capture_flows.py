"""Packet flows joined to the socket table: who is local, which process, cached after close.

The capture is the OS seam, so a list of packets stands in for it; the flow table, the
attribution and the engine's merge are the real ones.
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from netwatch.flows.merge import merge_flows
from netwatch.flows.serials import SerialBook, numbered
from netwatch.model import (
    Attribution,
    Direction,
    Endpoint,
    Flow,
    FlowKey,
    PacketMeta,
    SocketEntry,
    SocketTable,
    Transport,
    parse_ip,
)
from netwatch.pipeline.capture_flows import CaptureFlows
from netwatch.sources.capture import CaptureStats
from tests.builders import make_process

HOST = parse_ip("192.0.2.1")
PEER = parse_ip("198.51.100.7")
VPN = make_process("openvpn", pid=700)


class QueuedPackets:
    """Stands in for `LiveCapture`: hands out the packets it was given, counts nothing lost."""

    def __init__(self) -> None:
        self.queue: list[PacketMeta] = []
        self.stopped = False

    def packets(self, limit: int | None = None) -> list[PacketMeta]:
        n = len(self.queue) if limit is None else limit
        out, self.queue = self.queue[:n], self.queue[n:]
        return out

    def stats(self) -> CaptureStats:
        return CaptureStats(frames=0, kernel_drops=3, queue_drops=2, queued=len(self.queue))

    def stop(self) -> None:
        self.stopped = True


def _udp(src: Endpoint, dst: Endpoint, ts: float, payload: bytes = b"x") -> PacketMeta:
    return PacketMeta(ts, Transport.UDP, src, dst, 100, payload, ip_proto=17)


def _table(*entries: SocketEntry) -> SocketTable:
    return SocketTable(taken_at=0.0, entries=entries)


def _flows(local: frozenset = frozenset({HOST})) -> tuple[CaptureFlows, QueuedPackets]:
    cap = QueuedPackets()
    return CaptureFlows(cap, addresses=lambda: local), cap  # type: ignore[arg-type]


def test_outbound_flow_takes_the_socket_process_then_keeps_it_cached() -> None:
    flows, cap = _flows()
    me, them = Endpoint(HOST, 40000), Endpoint(PEER, 1194)
    cap.queue += [_udp(me, them, 1.0), _udp(them, me, 1.1)]
    # An unconnected UDP socket bound to the wildcard address, as openvpn --nobind makes.
    sock = SocketEntry(
        FlowKey(Transport.UDP, Endpoint(parse_ip("0.0.0.0"), 40000), None),
        None,
        Direction.OUTBOUND,
        VPN,
    )
    (flow,) = flows.flows(_table(sock), now=1.2)
    assert flow.key == FlowKey(Transport.UDP, me, them)
    assert flow.direction is Direction.OUTBOUND and flow.process == VPN
    assert flow.attribution is Attribution.SOCKET
    assert (flow.packets_sent, flow.packets_received) == (1, 1)
    # The socket is gone next tick: the process stays, marked cached.
    cap.queue.append(_udp(me, them, 2.0))
    (flow,) = flows.flows(_table(), now=2.1)
    assert flow.process == VPN and flow.attribution is Attribution.CACHED
    assert flow.packets_sent == 2


def test_inbound_flow_is_seen_from_the_local_responder() -> None:
    flows, cap = _flows()
    them, me = Endpoint(PEER, 51000), Endpoint(HOST, 51820)
    cap.queue.append(_udp(them, me, 1.0))
    listener = SocketEntry(
        FlowKey(Transport.UDP, Endpoint(HOST, 51820), None),
        None,
        Direction.LISTEN,
        make_process("wireguard-go", pid=800),
    )
    (flow,) = flows.flows(_table(listener), now=1.0)
    assert flow.direction is Direction.INBOUND
    assert flow.key.local == me and flow.key.remote == them
    assert flow.process is not None and flow.process.name == "wireguard-go"
    assert (flow.packets_sent, flow.packets_received) == (0, 1)


def test_a_socket_on_a_foreign_address_is_not_borrowed() -> None:
    # Forwarded traffic between two other hosts must not take a local wildcard listener's
    # process just because the port matches.
    flows, cap = _flows()
    a, b = Endpoint(parse_ip("203.0.113.5"), 40000), Endpoint(PEER, 80)
    cap.queue.append(_udp(a, b, 1.0))
    web = SocketEntry(
        FlowKey(Transport.UDP, Endpoint(parse_ip("0.0.0.0"), 80), None),
        None,
        Direction.LISTEN,
        make_process("nginx"),
    )
    (flow,) = flows.flows(_table(web), now=1.0)
    assert flow.process is None and flow.attribution is Attribution.UNKNOWN


def test_unattributed_flow_is_oriented_by_local_addresses() -> None:
    flows, cap = _flows()
    them, me = Endpoint(PEER, 5000), Endpoint(HOST, 6000)
    cap.queue.append(_udp(them, me, 1.0))
    (flow,) = flows.flows(_table(), now=1.0)
    assert flow.direction is Direction.INBOUND and flow.key.local == me


def test_expired_flows_are_reported_once_more_then_dropped() -> None:
    flows, cap = _flows()
    cap.queue.append(_udp(Endpoint(HOST, 1), Endpoint(PEER, 2), 1.0))
    assert len(flows.flows(_table(), now=1.0)) == 1
    assert len(flows.flows(_table(), now=500.0)) == 1  # idle: its last appearance
    assert flows.flows(_table(), now=501.0) == []


def test_counters_pass_drops_through_and_merge_keeps_the_socket_view() -> None:
    flows, cap = _flows()
    me, them = Endpoint(HOST, 40000), Endpoint(PEER, 443)
    cap.queue += [_udp(me, them, 1.0), _udp(them, me, 1.1)]
    packet_flows = flows.flows(_table(), now=1.2)
    c = flows.counters()
    assert (c.packets, c.capture_drops, c.queue_drops) == (2, 3, 2)
    merged = merge_flows([], packet_flows)
    assert merged[0].packets_sent == 1
    flows.close()
    assert cap.stopped


def test_a_connection_no_sample_listed_takes_the_owner_caught_at_its_start() -> None:
    from netwatch.sources.connect_owners import ConnectionOwners

    here, there = Endpoint(HOST, 40000), Endpoint(PEER, 443)
    starts = ConnectionOwners()  # not started: its memory is filled as its thread would
    starts._remember(FlowKey(Transport.TCP, here, there), VPN, 0.0)
    cap = QueuedPackets()
    flows = CaptureFlows(cap, addresses=lambda: frozenset({HOST}), starts=starts)  # type: ignore[arg-type]
    syn = PacketMeta(1.0, Transport.TCP, here, there, 60, tcp_flags=0x02, ip_proto=6)
    reply = PacketMeta(1.01, Transport.TCP, there, here, 4300, b"x" * 4200, 0x18, 6)
    other = PacketMeta(
        1.02, Transport.TCP, Endpoint(HOST, 40001), there, 60, tcp_flags=2, ip_proto=6
    )
    cap.queue += [syn, reply, other]
    by_port = {f.key.local.port: f for f in flows.flows(_table(), 1.5)}
    got = by_port[40000]
    assert (got.process, got.attribution, got.direction) == (
        VPN,
        Attribution.CONNECT,
        Direction.OUTBOUND,
    )
    assert got.bytes_received == 4300
    assert by_port[40001].process is None  # its start was not caught: nothing is made up
    (again,) = [f for f in flows.flows(_table(), 2.5) if f.key.local.port == 40000]
    assert again.attribution is Attribution.CONNECT  # not "cached": no sample ever had it


def test_a_merge_of_twins_with_unchanged_revisions_is_last_ticks_merge() -> None:
    from dataclasses import replace

    from netwatch.flows.serials import fresh_rev
    from netwatch.pipeline.engine import MergeMemo

    flows, cap = _flows()
    me, them = Endpoint(HOST, 40000), Endpoint(PEER, 443)
    cap.queue += [_udp(me, them, 1.0), _udp(them, me, 1.1)]
    (pf,) = flows.flows(_table(), now=1.2)
    sf = replace(pf, process=VPN, attribution=Attribution.SOCKET, rev_facts=fresh_rev())
    memo1: MergeMemo = {}
    (first,) = merge_flows([sf], [pf], {}, memo1)
    assert first.process == VPN and first.serial == pf.serial != 0
    (pf2,) = flows.flows(_table(), now=2.2)  # no new packets: the same revisions
    assert (pf2.serial, pf2.rev_facts, pf2.rev_traffic) == (pf.serial, pf.rev_facts, pf.rev_traffic)
    memo2: MergeMemo = {}
    (again,) = merge_flows([sf], [pf2], memo1, memo2)
    assert again is first
    sf2 = replace(sf, bytes_sent=5000, rev_traffic=fresh_rev())  # the socket twin's counters
    (changed,) = merge_flows([sf2], [pf2], memo2, {})
    assert changed.bytes_sent == 5000 and changed.serial == first.serial
    assert changed.rev_facts == first.rev_facts
    assert changed.rev_traffic != first.rev_traffic


def test_packets_queued_after_the_socket_lookup_wait_for_the_next_tick() -> None:
    """A conversation whose first packet arrives after `active` (the engine's socket
    lookup) would show with no owner this tick; it waits one tick instead."""
    flows, cap = _flows()
    a, b = Endpoint(HOST, 40000), Endpoint(PEER, 9997)
    cap.queue.append(_udp(a, b, 1.0))
    assert flows.active() == [(Transport.UDP, a, b)]
    late = Endpoint(HOST, 40001)
    cap.queue.append(_udp(late, b, 1.1))  # queued after the lookup
    first = flows.flows(_table(), 1.2)
    assert [f.key.local.port for f in first] == [40000]
    assert (Transport.UDP, late, b) in flows.active()
    assert sorted(f.key.local.port for f in flows.flows(_table(), 2.2)) == [40000, 40001]


def test_without_a_lookup_the_tick_takes_every_queued_packet() -> None:
    flows, cap = _flows()
    cap.queue.append(_udp(Endpoint(HOST, 40000), Endpoint(PEER, 9997), 1.0))
    assert [f.key.local.port for f in flows.flows(_table(), 1.2)] == [40000]


_PORTS = st.lists(st.integers(1, 6), unique=True, max_size=6)


@given(_PORTS, _PORTS, st.booleans())
def test_twins_found_by_serial_are_the_twins_found_by_key(
    socket_ports: list[int], packet_ports: list[int], with_translation: bool
) -> None:
    """The engine numbers both views of a conversation from one book, so a packet flow's
    twin is the socket flow with its serial; the merge must be the one joining by key."""
    book = SerialBook()

    def made(port: int, process: bool) -> Flow:
        key = FlowKey(Transport.TCP, Endpoint(HOST, 40000 + port), Endpoint(PEER, 443))
        f = Flow(key=key, direction=Direction.OUTBOUND, bytes_sent=port * 10,
                 process=make_process("curl") if process else None)  # fmt: skip
        return numbered(f, book.serial(key), None)

    sockets = [made(p, True) for p in socket_ports]
    packets = [replace(made(p, False), bytes_sent=p * 11) for p in packet_ports]

    def nothing_translated(t: Transport, a: Endpoint, b: Endpoint) -> None:
        del t, a, b  # a host without NAT: the translated lookups find nothing

    translated = nothing_translated if with_translation else None
    by_serial = merge_flows(sockets, packets, None, {}, translated, one_book=True)
    by_key = merge_flows(sockets, packets, None, {}, translated)  # no one_book: by key
    assert by_serial == by_key
    assert [f.serial for f in by_serial] == [f.serial for f in by_key]
