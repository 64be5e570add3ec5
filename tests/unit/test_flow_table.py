"""The flow table: keys, initiator, counters, TCP state, expiry, dissector contract, names."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from netwatch.flows.table import FlowTable
from netwatch.model import (
    Confidence,
    Direction,
    Endpoint,
    Evidence,
    Label,
    PacketContext,
    PacketFacts,
    PacketMeta,
    Transport,
    parse_ip,
)

C = Endpoint(parse_ip("192.0.2.1"), 40000)
S = Endpoint(parse_ip("203.0.113.5"), 443)
PROTO = {Transport.TCP: 6, Transport.UDP: 17, Transport.ESP: 50, Transport.GRE: 47}


def pkt(
    src: Endpoint,
    dst: Endpoint,
    ts: float = 0.0,
    *,
    transport: Transport = Transport.TCP,
    flags: int = 0x10,
    payload: bytes = b"",
    length: int = 100,
    ip_proto: int | None = None,
) -> PacketMeta:
    return PacketMeta(
        ts=ts,
        transport=transport,
        src=src,
        dst=dst,
        length=length,
        payload=payload,
        tcp_flags=flags if transport is Transport.TCP else 0,
        ip_proto=PROTO.get(transport, 0) if ip_proto is None else ip_proto,
    )


def test_both_directions_share_one_flow_initiator_first() -> None:
    t = FlowTable()
    t.ingest(pkt(C, S, 1.0, flags=0x02, length=60))
    t.ingest(pkt(S, C, 1.1, flags=0x12, length=60))
    t.ingest(pkt(C, S, 1.2, flags=0x10, length=52))
    t.ingest(pkt(C, S, 1.3, flags=0x18, payload=b"x" * 10, length=62))
    (flow,) = t.live()
    assert flow.key.local == C and flow.key.remote == S
    assert (flow.pkts_fwd, flow.bytes_fwd, flow.pkts_rev, flow.bytes_rev) == (3, 174, 1, 60)
    assert (flow.first_seen, flow.last_seen) == (1.0, 1.3)
    assert flow.tcp_state == "ESTABLISHED"
    out = flow.to_flow()
    assert out.direction is Direction.OUTBOUND and out.bytes_sent == 174
    assert (out.packets_sent, out.packets_received) == (3, 1)
    back = flow.to_flow(initiator_is_local=False)
    assert back.direction is Direction.INBOUND
    assert back.key.local == S and back.key.remote == C
    assert (back.bytes_sent, back.bytes_received) == (60, 174)


def test_initiator_from_syn_ack_and_from_ports_mid_stream() -> None:
    t = FlowTable()
    t.ingest(pkt(S, C, flags=0x12))  # SYN+ACK seen first: the receiver initiated
    t.ingest(pkt(Endpoint(S.ip, 22), Endpoint(C.ip, 50123), flags=0x18, payload=b"a"))
    t.ingest(
        pkt(Endpoint(S.ip, 1194), Endpoint(C.ip, 45000), transport=Transport.UDP, payload=b"a")
    )
    t.ingest(pkt(Endpoint(S.ip, 53), Endpoint(C.ip, 5353), transport=Transport.UDP))
    t.ingest(pkt(Endpoint(C.ip, 5000), Endpoint(S.ip, 6000), transport=Transport.UDP))
    initiators = [f.key.local.port for f in t.live()]
    # UDP trusts the first speaker unless it answers from a well-known port.
    assert initiators == [40000, 50123, 1194, 5353, 5000]


def test_tcp_states() -> None:
    t = FlowTable()
    f = t.ingest(pkt(C, S, flags=0x02))
    assert f.tcp_state == "SYN_SENT"
    t.ingest(pkt(S, C, flags=0x12))
    assert f.tcp_state == "SYN_RECV"
    t.ingest(pkt(C, S, flags=0x10))
    assert f.tcp_state == "ESTABLISHED"
    t.ingest(pkt(C, S, flags=0x11))
    assert f.tcp_state == "FIN_WAIT"
    t.ingest(pkt(S, C, flags=0x11))
    assert f.tcp_state == "CLOSED"
    u = t.ingest(pkt(C, S, transport=Transport.UDP))
    assert u.tcp_state is None


def test_idle_and_closed_expiry_and_drain() -> None:
    t = FlowTable(idle_timeout=60, closed_timeout=5)
    t.ingest(pkt(C, S, 0.0, flags=0x02))
    t.ingest(pkt(S, C, 1.0, flags=0x14))  # RST: closed
    other = Endpoint(C.ip, 40001)
    t.ingest(pkt(other, S, 2.0, transport=Transport.UDP))
    assert t.tick(5.0) == []
    (closed,) = t.tick(6.5)
    assert closed.key.local == C and len(t) == 1
    assert t.tick(61.0) == []
    (idle,) = t.tick(62.5)
    assert idle.key.local == other and len(t) == 0
    # A packet after expiry starts a new flow.
    t.ingest(pkt(S, C, 70.0, flags=0x10, payload=b"late"))
    assert len(t) == 1
    assert len(t.drain()) == 1 and len(t) == 0
    stats = t.stats()
    assert (stats.created, stats.expired, stats.live) == (3, 3, 0)


def test_open_tcp_flows_idle_longer_than_udp() -> None:
    t = FlowTable(idle_timeout=60, tcp_timeout=600)
    t.ingest(pkt(C, S, 0.0, flags=0x18, payload=b"keep-alive"))
    t.ingest(pkt(C, Endpoint(S.ip, 53), 0.0, transport=Transport.UDP))
    assert [f.ip_proto for f in t.tick(300.0)] == [17]
    t.ingest(pkt(S, C, 500.0, flags=0x11))  # the FIN much later joins the same flow
    (flow,) = t.live()
    assert flow.pkts_rev == 1 and flow.tcp_state == "FIN_WAIT"
    assert t.tick(1099.0) == []
    assert len(t.tick(1101.0)) == 1


def test_max_flows_bounds_memory() -> None:
    t = FlowTable(max_flows=100)
    for i in range(1000):
        t.ingest(pkt(Endpoint(C.ip, 1024 + i), S, float(i), flags=0x02))
    assert len(t) <= 100
    evicted = t.tick(1000.0)
    assert len(evicted) + len(t) == 1000
    assert t.stats().evicted == len(evicted)


def test_protocol_number_is_part_of_the_key() -> None:
    t = FlowTable()
    a, b = Endpoint(C.ip, 0), Endpoint(S.ip, 0)
    t.ingest(pkt(a, b, transport=Transport.ESP, payload=b"spi1"))
    t.ingest(pkt(b, a, transport=Transport.ESP, payload=b"spi2"))
    t.ingest(pkt(a, b, transport=Transport.GRE, payload=b"gre"))
    t.ingest(pkt(a, b, transport=Transport.OTHER, ip_proto=4, payload=b"ipip"))
    t.ingest(pkt(a, b, transport=Transport.OTHER, ip_proto=41, payload=b"6in4"))
    flows = t.live()
    assert len(flows) == 4
    esp = flows[0]
    assert esp.key.transport is Transport.ESP and (esp.pkts_fwd, esp.pkts_rev) == (1, 1)


class Recorder:
    """A real dissector stand-in: records what it was shown and answers from a script."""

    def __init__(self, answers: dict[bytes, PacketFacts] | None = None) -> None:
        self.seen: list[tuple[PacketContext, bytes]] = []
        self.answers = answers or {}

    def __call__(self, ctx: PacketContext, payload: bytes) -> PacketFacts | None:
        self.seen.append((ctx, payload))
        return self.answers.get(payload)


def test_dissector_sees_oriented_context_and_per_direction_index() -> None:
    rec = Recorder()
    t = FlowTable(rec)
    t.ingest(pkt(C, S, 1.0, flags=0x02))  # no payload: not dissected
    t.ingest(pkt(S, C, 1.1, flags=0x12))
    t.ingest(pkt(C, S, 1.2, payload=b"c0"))
    t.ingest(pkt(S, C, 1.3, payload=b"s0"))
    t.ingest(pkt(C, S, 1.4, payload=b"c1"))
    got = [(c.from_initiator, c.index, p, c.flow.local, c.ts) for c, p in rec.seen]
    assert got == [
        (True, 0, b"c0", C, 1.2),
        (False, 0, b"s0", C, 1.3),
        (True, 1, b"c1", C, 1.4),
    ]


def test_dissection_stops_when_done_or_past_the_limit() -> None:
    rec = Recorder({b"hello": PacketFacts(done=True)})
    t = FlowTable(rec, dissect_packets=3)
    for _ in range(3):
        t.ingest(pkt(C, S, payload=b"hello"))
    assert len(rec.seen) == 1
    other = Endpoint(C.ip, 1)
    for _ in range(10):
        t.ingest(pkt(other, S, payload=b"x"))
    assert len(rec.seen) == 1 + 3


def _label(name: str, conf: Confidence, vpn: bool = False) -> Label:
    return Label(name, "vpn" if vpn else "web", vpn, conf)


def test_facts_fold_highest_confidence_label_and_first_names() -> None:
    rec = Recorder(
        {
            b"a": PacketFacts(label=_label("tls", Confidence.MEDIUM), sni="first.example"),
            b"b": PacketFacts(label=_label("tor", Confidence.LOW, vpn=True), sni="second"),
            b"c": PacketFacts(label=_label("openvpn", Confidence.HIGH, vpn=True)),
            b"d": PacketFacts(label=_label("http", Confidence.MEDIUM), http_host="h.example"),
        }
    )
    t = FlowTable(rec)
    f = t.ingest(pkt(C, S, payload=b"a"))
    t.ingest(pkt(C, S, payload=b"b"))
    assert f.label is not None and f.label.name == "tls" and f.sni == "first.example"
    t.ingest(pkt(C, S, payload=b"c"))
    t.ingest(pkt(C, S, payload=b"d"))
    assert f.label is not None and f.label.name == "openvpn"
    assert f.http_host == "h.example"
    assert f.to_flow().label == f.label


def test_equal_confidence_prefers_a_vpn_label() -> None:
    rec = Recorder(
        {
            b"a": PacketFacts(label=_label("tls", Confidence.MEDIUM)),
            b"b": PacketFacts(label=_label("tor", Confidence.MEDIUM, vpn=True)),
        }
    )
    t = FlowTable(rec)
    f = t.ingest(pkt(C, S, payload=b"a"))
    t.ingest(pkt(C, S, payload=b"b"))
    assert f.label is not None and f.label.name == "tor"


def test_dns_answers_name_later_flows_and_flows_still_open() -> None:
    dns_server = Endpoint(parse_ip("192.0.2.53"), 53)
    answer = PacketFacts(dns_answers=(("vpn.example", S.ip),))
    rec = Recorder({b"answer": answer})
    t = FlowTable(rec)
    early = t.ingest(pkt(C, S, payload=b"early"))
    t.ingest(pkt(Endpoint(C.ip, 5353), dns_server, transport=Transport.UDP, payload=b"q"))
    t.ingest(pkt(dns_server, Endpoint(C.ip, 5353), transport=Transport.UDP, payload=b"answer"))
    later = t.ingest(pkt(Endpoint(C.ip, 40002), S, flags=0x02))
    assert later.dns_name == "vpn.example"
    assert early.dns_name is None
    t.live()
    assert early.dns_name == "vpn.example"


def test_dissector_errors_are_counted_not_raised() -> None:
    def broken(ctx: PacketContext, payload: bytes) -> PacketFacts | None:
        raise ValueError("bug")

    t = FlowTable(broken)
    t.ingest(pkt(C, S, payload=b"x"))
    t.ingest(pkt(C, S, payload=b"y"))
    assert t.stats().dissect_errors == 1


def test_on_expire_is_told_each_key() -> None:
    gone: list = []
    t = FlowTable(on_expire=gone.append, idle_timeout=1)
    t.ingest(pkt(C, S, 0.0, transport=Transport.UDP))
    t.tick(5.0)
    assert [k.local for k in gone] == [C]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 3),
            st.integers(0, 3),
            st.sampled_from([Transport.TCP, Transport.UDP]),
            st.integers(0, 0xFF),
            st.integers(20, 1500),
        ),
        max_size=60,
    )
)
def test_totals_are_conserved(packets: list[tuple[int, int, Transport, int, int]]) -> None:
    ends = [Endpoint(parse_ip(f"192.0.2.{i + 1}"), 1000 + i) for i in range(4)]
    t = FlowTable(max_flows=3)
    total_pkts = total_bytes = 0
    done = []
    for n, (a, b, transport, flags, length) in enumerate(packets):
        t.ingest(pkt(ends[a], ends[b], float(n), transport=transport, flags=flags, length=length))
        total_pkts += 1
        total_bytes += length
        done += t.tick(float(n))
    flows = done + t.drain()
    assert sum(f.pkts_fwd + f.pkts_rev for f in flows) == total_pkts
    assert sum(f.bytes_fwd + f.bytes_rev for f in flows) == total_bytes


def test_an_unchanged_flow_is_the_same_object_until_something_changes() -> None:
    from netwatch.flows.table import FlowOwner
    from netwatch.model import Attribution
    from tests.builders import make_process

    t = FlowTable()
    t.ingest(pkt(C, S, 1.0, flags=0x02, length=60))
    (state,) = t.live()
    first = state.to_flow()
    assert state.to_flow() is first  # nothing new: the same object, for the later stages
    assert state.to_flow(initiator_is_local=False) is not first  # another point of view
    assert state.to_flow() is not first and state.to_flow() == first  # recomputed, equal
    again = state.to_flow()
    t.ingest(pkt(S, C, 1.1, flags=0x12, length=60))
    after_packet = state.to_flow()
    assert after_packet is not again and after_packet.packets_received == 1
    t.own(state, FlowOwner(make_process("curl"), Attribution.CONNECT))
    named = state.to_flow()
    assert named is not after_packet and named.process is not None
    assert state.to_flow() is named


def test_an_equally_confident_label_that_adds_evidence_replaces_the_flows() -> None:
    wg = Label("wireguard", "vpn", True, Confidence.HIGH, (Evidence("message", "response"),))
    ts = Label("tailscale", "vpn", True, Confidence.HIGH, (*wg.evidence, Evidence("disco", "y")))
    other = Label("openvpn", "vpn", True, Confidence.HIGH, (Evidence("opcode", "x"),))
    rec = Recorder(
        {b"a": PacketFacts(label=wg), b"b": PacketFacts(label=ts), b"c": PacketFacts(label=other)}
    )
    t = FlowTable(rec)
    f = t.ingest(pkt(C, S, payload=b"a"))
    t.ingest(pkt(C, S, payload=b"b"))
    assert f.label == ts  # refines: the same proof and more
    t.ingest(pkt(C, S, payload=b"c"))
    assert f.label == ts  # equal confidence without all of the flow's evidence: no change


def test_flow_keeps_the_interface_its_first_packet_was_captured_on() -> None:
    t = FlowTable()
    first = PacketMeta(0.0, Transport.TCP, C, S, 60, tcp_flags=0x02, ip_proto=6, interface="eth0")
    t.ingest(first)
    t.ingest(PacketMeta(0.1, Transport.TCP, S, C, 60, tcp_flags=0x12, ip_proto=6))
    (state,) = t.live()
    out = state.to_flow()
    assert (out.interface, out.egress_by) == ("eth0", "capture")
    assert state.to_flow(initiator_is_local=False).interface == "eth0"
    t.ingest(pkt(C, Endpoint(S.ip, 444), 0.2))  # a pcap without interfaces
    plain = [s.to_flow() for s in t.live() if s.key.remote == Endpoint(S.ip, 444)]
    assert [(f.interface, f.egress_by) for f in plain] == [(None, None)]
