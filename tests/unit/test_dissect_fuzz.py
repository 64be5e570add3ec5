"""Hypothesis fuzzing: no dissector raises on arbitrary bytes or arbitrary packet contexts."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netwatch.dissect import (
    Dissector,
    anyconnect,
    certificate,
    dns,
    http,
    ipsec,
    openvpn,
    quic,
    softether,
    tailscale,
    tls,
    tor,
    tunnels,
    wireguard,
)
from netwatch.dissect.names import classify_host
from netwatch.model import Endpoint, FlowKey, PacketContext, Transport, parse_ip

PAYLOADS = st.one_of(
    st.binary(max_size=2048),
    # prefixes that steer into each parser, followed by garbage
    st.tuples(
        st.sampled_from(
            [
                b"\x16\x03\x01",
                b"\x16\x03\x03\x02\x00\x01\x00\x01\xfc\x03\x03",
                b"\x16\x03\x03\x08\x00\x0b\x00\x07\xfc\x00\x07\xf9\x00\x07\xf6\x30\x82",
                b"GET / HTTP/1.1\r\nHost: ",
                b"HTTP/1.1 200 OK\r\n",
                b"\x00\x0e\x38",
                b"\x38",
                b"\x40",
                b"\x01\x00\x00\x00",
                b"\x04\x00\x00\x00",
                b"\x00\x00\x00\x00",
                b"\x00\x00\x00\x03\x00\x00\x00\x07opcode",
                b"IP=",
                b"ACTL",
                b"0 alice 17",
                b"\xc3\x00\x00\x00\x01\x08",
                b"\x0d" + b"\x00" * 8 + b"Q043",
                b"\xc8\x02",
                b"\x00\x9c\x00\x01\x1a\x2b\x3c\x4d",
                b"SSH-2.0-",
                "TS💬".encode(),
                b"\x50" + bytes(8) + b"\x0f\x00\x00\x01\x69\x2d\x00\x00",
                b"CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\nX-CSTP-Version: 1\r\nX-DTLS-",
                b"\x16\xfe\xff\x00\x00",
                b"SSTP_DUPLEX_POST /sra_{BA195980-",
            ]
        ),
        st.binary(max_size=1500),
    ).map(lambda t: t[0] + t[1]),
)
PORTS = st.sampled_from(
    [0, 53, 80, 443, 500, 655, 1194, 1701, 1723, 4500, 5004, 5353, 41641, 51820, 9001]
)
ADDRS = st.sampled_from(["192.0.2.1", "198.51.100.2", "2001:db8::3"])


@st.composite
def contexts(draw: st.DrawFn) -> PacketContext:
    transport = draw(st.sampled_from(list(Transport)))
    local = Endpoint(parse_ip(draw(ADDRS)), draw(PORTS))
    remote = None if draw(st.integers(0, 20)) == 0 else Endpoint(parse_ip(draw(ADDRS)), draw(PORTS))
    return PacketContext(
        FlowKey(transport, local, remote),
        draw(st.booleans()),
        draw(st.integers(0, 70)),
        draw(st.floats(allow_nan=False, allow_infinity=False)),
    )


@settings(max_examples=400, deadline=None)
@given(PAYLOADS)
def test_protocol_parsers_never_raise(data: bytes) -> None:
    dns.parse_dns(data)
    dns.read_name(data, 0)
    tls.parse_client_hello_records(data)
    tls.parse_client_hello(data)
    tls.parse_handshake_stream(data)
    certificate.server_certificate(data)
    certificate.leaf_names(data)
    http.parse_request(data)
    http.response_body_prefix(data)
    ipsec.ike_exchange(data)
    ipsec.udp_label(data, (500, 4500))
    ipsec.esp_label(data)
    ipsec.ah_label(data)
    tunnels.l2tp_label(data)
    tunnels.pptp_label(data)
    tunnels.gre_label(data)
    tunnels.tinc_id(data)
    softether.parse_pack(data)
    softether.natt_label(data)
    softether.azure_label(data)
    openvpn.frame(data, tcp=True)
    openvpn.reset_opcode(data)
    if len(data) > 9:
        openvpn.reset_layout(data)
    tailscale.disco_sender(data)
    anyconnect.dtls_record(data)
    request = http.parse_request(data)
    if request is not None:
        anyconnect.cstp_label(request.method, request.path, request.line, request.cstp_headers)
    wireguard.message_type(data)
    quic.parse_gquic(data)
    header = quic.parse_long_header(data)
    if header is not None and header.is_initial and quic.known_version(header.version):
        quic.decrypt_initial(data, header, quic.InitialKeys.derive(header.version, header.dcid))
    quic.CryptoStream().add_frames(data)
    tor.tor_like_sni(data.decode("latin-1"))
    classify_host(data.decode("latin-1"))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), PAYLOADS), max_size=12))
def test_trackers_never_raise(packets: list[tuple[bool, bytes]]) -> None:
    ovpn_udp, ovpn_tcp = openvpn.OpenVpnTracker(tcp=False), openvpn.OpenVpnTracker(tcp=True)
    wg = wireguard.WireGuardTracker()
    for i, (side, data) in enumerate(packets):
        ovpn_udp.feed(side, i, data)
        ovpn_tcp.feed(side, i, data)
        wg.feed(side, data)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(contexts(), PAYLOADS), min_size=1, max_size=10))
def test_dissector_inspect_never_raises(steps: list[tuple[PacketContext, bytes]]) -> None:
    d = Dissector(max_flows=4)
    for ctx, payload in steps:
        facts = d.inspect(ctx, payload)
        if facts is not None and facts.label is not None:
            label = facts.label
            assert label.name
            assert label.vpn == (label.category in ("vpn", "anonymizer"))
    assert d.tracked_flows <= 4


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), PAYLOADS), min_size=1, max_size=16), PORTS, PORTS)
def test_one_flow_fed_in_order_never_raises(
    packets: list[tuple[bool, bytes]], cport: int, sport: int
) -> None:
    d = Dissector()
    for transport in (Transport.TCP, Transport.UDP):
        key = FlowKey(
            transport,
            Endpoint(parse_ip("192.0.2.1"), cport),
            Endpoint(parse_ip("192.0.2.2"), sport),
        )
        index = [0, 0]
        for side, payload in packets:
            d.inspect(PacketContext(key, side, index[0 if side else 1]), payload)
            index[0 if side else 1] += 1
