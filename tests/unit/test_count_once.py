"""Counting every packet once: a routed, bridged or translated packet is seen as several copies.

Packets are built as live capture and Linux cooked capture files give them (`pkttype`,
`ifindex`), in the order the kernel hands the copies over: arriving before leaving. The
last tests read Linux cooked (SLL, SLL2) capture files written with scapy, as `tcpdump -i
any` records a router's traffic.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import CookedLinux, CookedLinuxV2
from scapy.packet import Raw
from scapy.utils import wrpcap

from netwatch.flows.attribution import orient
from netwatch.flows.table import FlowState, FlowTable
from netwatch.model import Endpoint, PacketMeta, Transport, parse_ip
from netwatch.model.packet import (
    PACKET_BROADCAST,
    PACKET_HOST,
    PACKET_MULTICAST,
    PACKET_OTHERHOST,
    PACKET_OUTGOING,
)
from netwatch.pipeline.offline import OfflineAnalysis
from netwatch.sources.pcapfile import read_packets

HOST = parse_ip("192.0.2.1")
LOCAL = frozenset({HOST, parse_ip("127.0.0.1")})
A = Endpoint(parse_ip("203.0.113.5"), 40000)
"""A client in a namespace behind this host (a container)."""
B = Endpoint(parse_ip("198.51.100.9"), 5001)
"""A server on the other side."""
H = Endpoint(HOST, 40000)
"""The client's address after masquerade (source NAT keeps the port when it can)."""
IF_A, IF_B = 7, 9
NAMES = {IF_A: "veth-a", IF_B: "veth-b", 11: "br0"}


def _pkt(
    ts: float,
    src: Endpoint,
    dst: Endpoint,
    pkttype: int | None,
    ifindex: int,
    size: int = 1028,
) -> PacketMeta:
    return PacketMeta(
        ts,
        Transport.UDP,
        src,
        dst,
        size,
        b"x" * (size - 28),
        ip_proto=17,
        interface=NAMES.get(ifindex),
        pkttype=pkttype,
        ifindex=ifindex,
    )


def _table(local: frozenset = LOCAL) -> FlowTable:
    table = FlowTable()
    table.local = local
    return table


def _flow(table: FlowTable, a: Endpoint, b: Endpoint) -> FlowState:
    (state,) = [s for s in table.live() if {s.initiator, s.responder} == {a, b}]
    return state


def _routed(n: int, size: int = 1028) -> list[PacketMeta]:
    """`n` datagrams A -> B and `n` answers, each seen arriving and then leaving."""
    out: list[PacketMeta] = []
    for i in range(n):
        t = i * 0.01
        out += [
            _pkt(t, A, B, PACKET_HOST, IF_A, size),
            _pkt(t + 2e-5, A, B, PACKET_OUTGOING, IF_B, size),
            _pkt(t + 0.005, B, A, PACKET_HOST, IF_B, 100),
            _pkt(t + 0.005 + 2e-5, B, A, PACKET_OUTGOING, IF_A, 100),
        ]
    return out


def test_a_routed_packet_is_counted_once_and_its_flow_is_forwarded() -> None:
    table = _table()
    for p in _routed(50):
        table.ingest(p)
    state = _flow(table, A, B)
    assert (state.pkts_fwd, state.bytes_fwd) == (50, 50 * 1028)
    assert (state.pkts_rev, state.bytes_rev) == (50, 50 * 100)
    assert state.forwarded
    assert state.interface == "veth-b", "a forwarded flow's interface is where it leaves"
    assert table.stats().copies == 100
    flow = orient(state)
    assert flow.forwarded and flow.bytes_sent == 50 * 1028 and flow.interface == "veth-b"


def test_a_stream_of_equal_datagrams_counts_every_one() -> None:
    # Back to back, each arriving then leaving: the next datagram's arriving copy comes
    # right after the last one's leaving copy, the same size on another interface.
    table = _table()
    for i in range(200):
        table.ingest(_pkt(i * 1e-5, A, B, PACKET_HOST, IF_A))
        table.ingest(_pkt(i * 1e-5 + 2e-6, A, B, PACKET_OUTGOING, IF_B))
    state = _flow(table, A, B)
    assert (state.pkts_fwd, state.bytes_fwd, table.stats().copies) == (200, 200 * 1028, 200)


def test_routed_copies_are_recognised_without_the_hosts_addresses() -> None:
    # A capture file has no address list: the copies alone prove the packet passed through.
    table = _table(frozenset())
    for p in _routed(5):
        table.ingest(p)
    state = _flow(table, A, B)
    assert (state.bytes_fwd, state.bytes_rev, state.forwarded) == (5 * 1028, 500, True)


def test_a_leaving_copy_is_known_even_when_other_frames_came_between() -> None:
    # Another CPU's frame lands between the two copies, or the copy comes late.
    table = _table()
    other = Endpoint(parse_ip("198.51.100.77"), 443)
    for i in range(10):
        t = i * 0.01
        table.ingest(_pkt(t, A, B, PACKET_HOST, IF_A))
        table.ingest(_pkt(t + 1e-5, H, other, PACKET_OUTGOING, IF_B, 1028))
        table.ingest(_pkt(t + 0.004, A, B, PACKET_OUTGOING, IF_B))
    state = _flow(table, A, B)
    assert (state.pkts_fwd, state.bytes_fwd) == (10, 10 * 1028)
    mine = _flow(table, H, other)
    assert mine.pkts_fwd == 10 and not mine.forwarded, "this host's own traffic still counts"


def test_this_hosts_own_traffic_counts_every_packet() -> None:
    table = _table()
    srv = Endpoint(parse_ip("198.51.100.9"), 53)
    for i in range(20):
        table.ingest(_pkt(i * 0.001, H, srv, PACKET_OUTGOING, IF_B, 80))
        table.ingest(_pkt(i * 0.001 + 1e-4, srv, H, PACKET_HOST, IF_B, 80))
    state = _flow(table, H, srv)
    assert (state.pkts_fwd, state.pkts_rev, state.forwarded) == (20, 20, False)
    assert table.stats().copies == 0


@pytest.mark.parametrize("port_sees", [PACKET_OTHERHOST, PACKET_HOST], ids=["other", "host"])
def test_a_bridged_packet_counts_once_on_the_port_it_arrived_by(port_sees: int) -> None:
    # A container on a bridge: its frame is seen on its veth (a bridge port: for another
    # link address, or for this host when the bridge took the port's address), then on the
    # bridge (for this host, to be routed), then leaving.
    table = _table()
    for i in range(8):
        t = i * 0.01
        table.ingest(_pkt(t, A, B, port_sees, IF_A))
        table.ingest(_pkt(t + 1e-5, A, B, PACKET_HOST, 11))
        table.ingest(_pkt(t + 2e-5, A, B, PACKET_OUTGOING, IF_B))
        table.ingest(_pkt(t + 0.005, B, A, PACKET_HOST, IF_B, 60))
        table.ingest(_pkt(t + 0.005 + 1e-5, B, A, PACKET_OUTGOING, 11, 60))
        table.ingest(_pkt(t + 0.005 + 2e-5, B, A, PACKET_OUTGOING, IF_A, 60))
    state = _flow(table, A, B)
    assert (state.pkts_fwd, state.pkts_rev) == (8, 8)
    assert state.forwarded and state.interface == "veth-b"


def test_this_hosts_packets_to_a_container_on_a_bridge_count_once() -> None:
    # Sent by the bridge, then by the container's port; back to back, equal sizes.
    table = _table()
    here, box = Endpoint(HOST, 41000), Endpoint(parse_ip("203.0.113.5"), 80)
    for i in range(30):
        t = i * 1e-5
        table.ingest(_pkt(t, here, box, PACKET_OUTGOING, 11))
        table.ingest(_pkt(t + 1e-6, here, box, PACKET_OUTGOING, IF_A))
    state = _flow(table, here, box)
    assert (state.pkts_fwd, state.forwarded, table.stats().copies) == (30, False, 30)


def test_a_packet_to_this_host_through_a_bridge_is_not_forwarded() -> None:
    table = _table()
    here = Endpoint(HOST, 53)
    table.ingest(_pkt(0.0, A, here, PACKET_OTHERHOST, IF_A, 70))
    table.ingest(_pkt(1e-5, A, here, PACKET_HOST, 11, 70))
    state = _flow(table, A, here)
    assert (state.pkts_fwd, state.forwarded) == (1, False)


def test_a_multicast_from_a_neighbour_is_not_forwarded() -> None:
    table = _table()
    mdns = Endpoint(parse_ip("224.0.0.251"), 5353)
    table.ingest(_pkt(0.0, A, mdns, PACKET_MULTICAST, IF_A, 90))
    assert not _flow(table, A, mdns).forwarded


def test_another_hosts_broadcast_does_not_hide_this_hosts_own() -> None:
    # DHCP: every client sends 0.0.0.0:68 -> 255.255.255.255:67, so a neighbour's discover
    # and this host's own are one flow; the neighbour's arrived, this host's leaves.
    table = _table()
    client = Endpoint(parse_ip("0.0.0.0"), 68)
    everyone = Endpoint(parse_ip("255.255.255.255"), 67)
    table.ingest(_pkt(0.0, client, everyone, PACKET_BROADCAST, IF_A, 328))
    table.ingest(_pkt(1.0, client, everyone, PACKET_OUTGOING, IF_A, 328))
    state = _flow(table, client, everyone)
    assert (state.pkts_fwd, state.forwarded) == (2, False)


def test_neither_address_local_marks_forwarded_from_one_copy() -> None:
    # Capture on the inner interface only: the leaving copy is never seen.
    table = _table()
    table.ingest(_pkt(0.0, A, B, PACKET_HOST, IF_A))
    state = _flow(table, A, B)
    assert state.forwarded and state.pkts_fwd == 1


def _snat(n: int) -> list[PacketMeta]:
    """A container's datagrams masqueraded to this host's address, and the answers."""
    out: list[PacketMeta] = []
    for i in range(n):
        t = i * 0.01
        out += [
            _pkt(t, A, B, PACKET_HOST, IF_A),
            _pkt(t + 2e-5, H, B, PACKET_OUTGOING, IF_B),
            _pkt(t + 0.005, B, H, PACKET_HOST, IF_B, 100),
            _pkt(t + 0.005 + 2e-5, B, A, PACKET_OUTGOING, IF_A, 100),
        ]
    return out


def test_masquerade_counts_each_packet_once_on_the_untranslated_flow() -> None:
    table = _table()
    for p in _snat(30):
        table.ingest(p)
    inner, outer = _flow(table, A, B), _flow(table, H, B)
    assert (inner.bytes_fwd, inner.bytes_rev) == (30 * 1028, 30 * 100)
    assert (outer.pkts_fwd, outer.pkts_rev, outer.bytes_fwd, outer.bytes_rev) == (0, 0, 0, 0)
    assert inner.forwarded and outer.forwarded and outer.nat_copy and not inner.nat_copy
    assert inner.interface == "veth-b", "the untranslated flow leaves by the outer interface"
    total = sum(s.bytes_fwd + s.bytes_rev for s in table.live())
    assert total == 30 * (1028 + 100), "the totals hold every byte once"


def test_masquerade_is_recognised_without_the_hosts_addresses() -> None:
    # A capture file: which copy is inner follows from which endpoint NAT changed.
    table = _table(frozenset())
    for p in _snat(10):
        table.ingest(p)
    inner, outer = _flow(table, A, B), _flow(table, H, B)
    assert (inner.pkts_fwd, inner.pkts_rev, inner.forwarded) == (10, 10, True)
    assert outer.pkts_fwd + outer.pkts_rev == 0 and outer.nat_copy


def test_masquerade_behind_a_bridge_counts_each_packet_once() -> None:
    # Docker's default: the container's frame is seen on its veth (a bridge port), on the
    # bridge, then masqueraded out; the answer comes in, is un-masqueraded and leaves by the
    # bridge and then by the port. Streams of equal sizes, back to back.
    table = _table()
    veth, bridge = IF_A, 11
    for i in range(40):
        t = i * 1e-4
        table.ingest(_pkt(t, A, B, PACKET_OTHERHOST, veth))
        table.ingest(_pkt(t + 1e-6, A, B, PACKET_HOST, bridge))
        table.ingest(_pkt(t + 2e-6, H, B, PACKET_OUTGOING, IF_B))
    for i in range(40):
        t = 1 + i * 1e-4
        table.ingest(_pkt(t, B, H, PACKET_HOST, IF_B, 300))
        table.ingest(_pkt(t + 1e-6, B, A, PACKET_OUTGOING, bridge, 300))
        table.ingest(_pkt(t + 2e-6, B, A, PACKET_OUTGOING, veth, 300))
    inner, outer = _flow(table, A, B), _flow(table, H, B)
    assert (inner.pkts_fwd, inner.pkts_rev) == (40, 40)
    assert outer.pkts_fwd + outer.pkts_rev == 0 and outer.nat_copy


def test_port_forwarding_counts_each_packet_once_on_the_inner_flow() -> None:
    # Destination NAT: a client outside reaches 192.0.2.1:8080, forwarded to a container.
    table = _table()
    client = Endpoint(parse_ip("198.51.100.20"), 50000)
    public, inner_srv = Endpoint(HOST, 8080), Endpoint(parse_ip("203.0.113.5"), 80)
    for i in range(12):
        t = i * 0.01
        table.ingest(_pkt(t, client, public, PACKET_HOST, IF_B, 200))
        table.ingest(_pkt(t + 2e-5, client, inner_srv, PACKET_OUTGOING, IF_A, 200))
        table.ingest(_pkt(t + 0.005, inner_srv, client, PACKET_HOST, IF_A, 900))
        table.ingest(_pkt(t + 0.005 + 2e-5, public, client, PACKET_OUTGOING, IF_B, 900))
    inner, outer = _flow(table, client, inner_srv), _flow(table, client, public)
    assert (inner.bytes_fwd, inner.bytes_rev) == (12 * 200, 12 * 900)
    assert outer.bytes_fwd + outer.bytes_rev == 0 and outer.nat_copy and outer.forwarded
    assert inner.forwarded


def test_two_unrelated_packets_of_one_size_are_not_a_nat_pair() -> None:
    # A container's datagram to one server, then this host's own of the same size to another.
    table = _table()
    other = Endpoint(parse_ip("198.51.100.50"), 9999)
    table.ingest(_pkt(0.0, A, B, PACKET_HOST, IF_A))
    table.ingest(_pkt(1e-5, H, other, PACKET_OUTGOING, IF_B))
    assert _flow(table, H, other).pkts_fwd == 1


def test_frames_that_do_not_say_which_copy_they_are_all_count() -> None:
    table = _table()
    for p in _routed(3):
        table.ingest(PacketMeta(p.ts, p.transport, p.src, p.dst, p.length, p.payload, ip_proto=17))
    state = _flow(table, A, B)
    assert (state.pkts_fwd, state.forwarded) == (6, False)


# ------------------------------------------------------------------ capture files


def _udp(src: Endpoint, dst: Endpoint, size: int) -> IP:
    return (
        IP(src=str(src.ip), dst=str(dst.ip))
        / UDP(sport=src.port, dport=dst.port)
        / Raw(b"y" * (size - 28))
    )


def _cooked(tmp_path: Path, v2: bool) -> Path:
    """What `tcpdump -i any` records on a router: each datagram arriving, then leaving."""
    frames = []
    for i in range(20):
        for pkttype, ifindex in ((PACKET_HOST, IF_A), (PACKET_OUTGOING, IF_B)):
            if v2:
                head = CookedLinuxV2(proto=0x0800, ifindex=ifindex, pkttype=pkttype)
            else:
                head = CookedLinux(proto=0x0800, pkttype=pkttype)
            frame = head / _udp(A, B, 1028)
            frame.time = 1_700_000_000 + i * 0.01 + (2e-5 if pkttype else 0)
            frames.append(frame)
    path = tmp_path / ("v2.pcap" if v2 else "v1.pcap")
    wrpcap(str(path), frames)
    return path


def test_sll2_carries_the_copy_and_the_interface(tmp_path: Path) -> None:
    metas = list(read_packets(_cooked(tmp_path, v2=True)))
    assert [(m.pkttype, m.ifindex) for m in metas[:2]] == [
        (PACKET_HOST, IF_A),
        (PACKET_OUTGOING, IF_B),
    ]


def test_sll_carries_the_copy(tmp_path: Path) -> None:
    metas = list(read_packets(_cooked(tmp_path, v2=False)))
    assert [(m.pkttype, m.ifindex) for m in metas[:2]] == [(PACKET_HOST, 0), (PACKET_OUTGOING, 0)]


def test_analyze_of_a_routers_any_capture_counts_once(tmp_path: Path) -> None:
    for v2 in (True, False):
        run = OfflineAnalysis()
        (flow,) = [ef.flow for ef in run.flows(read_packets(_cooked(tmp_path, v2)))]
        assert (flow.packets_sent + flow.packets_received, flow.forwarded) == (20, True)
        assert flow.bytes_sent + flow.bytes_received == 20 * 1028


def test_loopback_in_an_any_capture_counts_once(tmp_path: Path) -> None:
    # `tcpdump -i any` records loopback traffic leaving and then arriving; live capture
    # keeps only the arriving copy, and so does reading the file.
    here, there = Endpoint(HOST, 40000), Endpoint(HOST, 53)
    frames = []
    for i, (pkttype, v2) in enumerate(
        [
            (PACKET_OUTGOING, True),
            (PACKET_HOST, True),
            (PACKET_OUTGOING, False),
            (PACKET_HOST, False),
        ]
    ):
        head = (
            CookedLinuxV2(proto=0x0800, ifindex=1, pkttype=pkttype, lladdrtype=772)
            if v2
            else CookedLinux(proto=0x0800, pkttype=pkttype, lladdrtype=772)
        )
        frame = head / _udp(here, there, 60)
        frame.time = 1_700_000_000 + i * 1e-5
        frames.append(frame)
    path = tmp_path / "lo.pcap"
    wrpcap(str(path), frames[:2])
    assert [m.pkttype for m in read_packets(path)] == [PACKET_HOST]
    wrpcap(str(path), frames[2:])
    assert [m.pkttype for m in read_packets(path)] == [PACKET_HOST]
