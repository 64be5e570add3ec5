"""TLS ClientHello over TCP and QUIC v1 Initial packets, built byte-exact to RFC 8446/9001."""

from __future__ import annotations

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.tls.extensions import (
    ProtocolName,
    ServerName,
    TLS_Ext_ALPN,
    TLS_Ext_ServerName,
    TLS_Ext_SupportedGroups,
    TLS_Ext_Unknown,
)
from scapy.layers.tls.handshake import TLSClientHello
from scapy.layers.tls.record import TLS

from netwatch.dissect import Dissector
from netwatch.dissect.quic import InitialKeys, parse_gquic
from netwatch.dissect.tls import NEED_MORE, ClientHello, RecordWalker, parse_client_hello_records
from netwatch.model import Endpoint, FlowKey, PacketContext, PacketFacts, Transport, parse_ip


def _key(transport: Transport, sport: int = 443) -> FlowKey:
    return FlowKey(
        transport, Endpoint(parse_ip("192.0.2.10"), 51000), Endpoint(parse_ip("203.0.113.9"), sport)
    )


def _ctx(key: FlowKey, index: int = 0, from_initiator: bool = True) -> PacketContext:
    return PacketContext(key, from_initiator, index, 0.0)


def _hello(sni: str | None, alpn: tuple[bytes, ...] = (b"h2", b"http/1.1")) -> TLSClientHello:
    ext: list[object] = []
    if sni is not None:
        ext.append(TLS_Ext_ServerName(servernames=[ServerName(servername=sni.encode())]))
    if alpn:
        ext.append(TLS_Ext_ALPN(protocols=[ProtocolName(protocol=p) for p in alpn]))
    return TLSClientHello(ext=ext)


def test_client_hello_sni_and_alpn_over_tcp_is_plain_tls() -> None:
    raw = bytes(TLS(msg=[_hello("www.example.com")]))
    facts = Dissector().inspect(_ctx(_key(Transport.TCP)), raw)
    assert facts is not None and facts.label is not None
    assert facts.sni == "www.example.com" and facts.alpn == ("h2", "http/1.1")
    assert (facts.label.name, facts.label.category, facts.label.vpn) == ("tls", "web", False)
    assert not facts.done  # the server's certificate may follow in clear (TLS 1.2)


def test_client_hello_split_over_three_segments_is_reassembled() -> None:
    raw = bytes(TLS(msg=[_hello("download.vpngate.jp")]))
    key = _key(Transport.TCP)
    d = Dissector()
    assert d.inspect(_ctx(key, 0), raw[:3]) is None
    assert d.inspect(_ctx(key, 1), raw[3:40]) is None
    facts = d.inspect(_ctx(key, 2), raw[40:])
    assert facts is not None and facts.sni == "download.vpngate.jp"
    assert facts.label is not None and facts.label.name == "vpngate" and facts.label.vpn


def test_client_hello_after_an_http_connect_through_a_proxy() -> None:
    key = _key(Transport.TCP, 3128)
    d = Dissector()
    connect = b"CONNECT www.vpngate.net:443 HTTP/1.1\r\nHost: www.vpngate.net:443\r\n\r\n"
    first = d.inspect(_ctx(key, 0), connect)
    assert first is not None and first.http_host == "www.vpngate.net"
    assert d.inspect(_ctx(key, 0, from_initiator=False), b"HTTP/1.1 200 OK\r\n\r\n") is None
    facts = d.inspect(_ctx(key, 1), bytes(TLS(msg=[_hello("www.vpngate.net")])))
    assert facts is not None and facts.sni == "www.vpngate.net"


def test_softether_ddns_sni_is_high_confidence_softether() -> None:
    raw = bytes(TLS(msg=[_hello("DDNS", alpn=())]))
    facts = Dissector().inspect(_ctx(_key(Transport.TCP)), raw)
    assert facts is not None and facts.label is not None
    assert (facts.label.name, facts.label.vpn, facts.label.confidence.value) == (
        "softether",
        True,
        "high",
    )
    assert ("sni", "DDNS") in [(e.name, e.value) for e in facts.label.evidence]


def test_provider_and_tor_like_snis() -> None:
    d = Dissector()
    nord = d.inspect(_ctx(_key(Transport.TCP)), bytes(TLS(msg=[_hello("api.nordvpn.com")])))
    assert nord is not None and nord.label is not None and nord.label.name == "nordvpn"
    tor_key = FlowKey(
        Transport.TCP, Endpoint(parse_ip("192.0.2.10"), 51001), _key(Transport.TCP, 9001).remote
    )
    tor = d.inspect(_ctx(tor_key), bytes(TLS(msg=[_hello("www.q4cyamnc6mtokjurvdclt.com")])))
    assert tor is not None and tor.label is not None
    assert (tor.label.name, tor.label.category, tor.label.vpn) == ("tor", "anonymizer", True)


def test_udp_acceleration_next_to_a_proven_softether_flow_is_medium() -> None:
    d = Dissector()
    facts = d.inspect(_ctx(_key(Transport.TCP, 443)), bytes(TLS(msg=[_hello("DDNS")])))
    assert facts is not None and facts.label is not None
    assert (facts.label.name, facts.label.confidence.value) == ("softether", "high")
    udp = FlowKey(
        Transport.UDP, Endpoint(parse_ip("192.0.2.10"), 35000), _key(Transport.UDP, 40123).remote
    )
    accel = d.inspect(_ctx(udp), bytes(range(64)))
    assert accel is not None and accel.label is not None
    assert (accel.label.name, accel.label.confidence.value) == ("softether", "medium")


def test_tls_on_softether_ports_then_udp_acceleration_between_the_same_hosts() -> None:
    d = Dissector()
    tls_key = _key(Transport.TCP, 5555)
    facts = d.inspect(_ctx(tls_key), bytes(TLS(msg=[_hello("203.0.113.9", alpn=())])))
    assert facts is not None and facts.label is not None
    assert (facts.label.name, facts.label.confidence.value) == ("softether", "guess")
    udp = FlowKey(
        Transport.UDP, Endpoint(parse_ip("192.0.2.10"), 35000), _key(Transport.UDP, 40123).remote
    )
    accel = d.inspect(_ctx(udp), bytes(range(64)))
    assert accel is not None and accel.label is not None and accel.label.name == "softether"
    # Two ports between the same hosts are still only ports: no surer than the TLS guess.
    assert accel.label.confidence.value == "guess"
    other = FlowKey(Transport.UDP, Endpoint(parse_ip("192.0.2.99"), 35000), udp.remote)
    assert d.inspect(_ctx(other), bytes(range(64))) is None


def _record(length: int) -> bytes:
    """An encrypted TLS application-data record of `length` bytes (type and size are clear)."""
    return b"\x17\x03\x03" + length.to_bytes(2, "big") + bytes(length)


def _feed(d: Dissector, key: FlowKey, segments: list[bytes]) -> list[object]:
    """The client's segments, numbered after the ClientHello; what each one reports."""
    return [d.inspect(_ctx(key, i + 1), seg) for i, seg in enumerate(segments)]


def test_the_servers_tls13_reply_does_not_end_the_watch_for_the_upload() -> None:
    """Live order: the server's ServerHello (TLS 1.3: no certificate in clear) comes before
    the client's upload. Reading the server's side must not mark the flow done while the
    client's side is still watched (it did when certificate reading met the upload watch)."""
    key = _key(Transport.TCP, 443)
    assert key.remote is not None
    d = Dissector()
    hello = d.inspect(_ctx(key), bytes(TLS(msg=[_hello(str(key.remote.ip), alpn=())])))
    assert hello is not None and not hello.done
    server_hello_13 = b"\x16\x03\x03\x00\x7a\x02" + bytes(0x79) + _record(40)
    reply = d.inspect(_ctx(key, 1, from_initiator=False), server_hello_13)
    assert reply is None or not reply.done
    *_, last = _feed(d, key, [_record(69), _record(272), _record(3286)[:1448]])
    assert isinstance(last, PacketFacts) and last.label is not None
    assert (last.label.name, last.done) == ("softether", True)


def test_sni_that_is_the_server_address_is_softether_only_with_the_watermark_upload() -> None:
    # Recorded from Debian's vpnclient (TLS 1.3): Finished (69), the POST's header (272), then
    # the 1,411-byte watermark plus padding (3286), whose first MSS-sized segment is enough.
    key = _key(Transport.TCP, 443)
    assert key.remote is not None
    d = Dissector()
    hello = d.inspect(_ctx(key), bytes(TLS(msg=[_hello(str(key.remote.ip), alpn=())])))
    assert hello is not None and hello.label is not None and not hello.done
    assert (hello.label.name, hello.label.vpn) == ("tls", False)
    assert "numeric_sni" in [e.name for e in hello.label.evidence]
    upload = _record(3286)
    *before, last = _feed(d, key, [_record(69), _record(272), upload[:1448]])
    assert before == [None, None]
    assert isinstance(last, PacketFacts) and last.label is not None and last.done
    assert (last.label.name, last.label.vpn, last.label.confidence.value) == (
        "softether",
        True,
        "medium",
    )
    assert ("watermark_record", "3286 bytes, the size of the SSL-VPN GIF watermark upload") in [
        (e.name, e.value) for e in last.label.evidence
    ]


def test_an_app_sending_an_ip_as_server_name_is_not_softether() -> None:
    # Video and conferencing apps and speakers send an IP as SNI too; without the SoftEther
    # upload the flow stays plain TLS (the SNI is a hint in the evidence, not a VPN label).
    key = _key(Transport.TCP, 443)
    assert key.remote is not None
    ip = str(key.remote.ip)
    d = Dissector()
    hello = d.inspect(_ctx(key), bytes(TLS(msg=[_hello(ip, alpn=())])))
    assert hello is not None and hello.label is not None and not hello.label.vpn
    # The fifth record has the watermark's size, but SoftEther's comes among the first four.
    small = [_record(69), _record(180), _record(1200), _record(95) + _record(2000)]
    reports = _feed(d, key, small)
    assert reports[:3] == [None, None, None]
    assert isinstance(reports[3], PacketFacts) and reports[3].done and reports[3].label is None
    # An HTTP/2 client (ALPN offered) is no SoftEther client; another address as SNI
    # is no hint. (Both flows still wait for the server's certificate, which may follow.)
    h2 = Dissector().inspect(_ctx(key), bytes(TLS(msg=[_hello(ip)])))
    assert h2 is not None and h2.label is not None and not h2.label.vpn
    other = Dissector().inspect(_ctx(key), bytes(TLS(msg=[_hello("192.0.2.77", alpn=())])))
    assert other is not None and other.label is not None
    assert "numeric_sni" not in [e.name for e in other.label.evidence]


def test_record_walker_follows_headers_split_across_segments() -> None:
    walker = RecordWalker()
    stream = _record(5) + _record(300) + b"\x15\x03\x03\x00\x02\x01\x00"
    assert walker.feed(stream[:3]) == []
    assert walker.feed(stream[3:12]) == [(23, 5)]
    assert walker.feed(stream[12:]) == [(23, 300), (21, 2)]
    assert walker.feed(b"GET / HTTP/1.1\r\n") is None


def test_ordinary_names_are_not_tor_or_vpn() -> None:
    for i, sni in enumerate(
        ["www.google.com", "www.4shared.com", "www.w3schools.com", "notnordvpn.com"]
    ):
        key = FlowKey(
            Transport.TCP, Endpoint(parse_ip("192.0.2.10"), 52000 + i), _key(Transport.TCP).remote
        )
        facts = Dissector().inspect(_ctx(key), bytes(TLS(msg=[_hello(sni)])))
        assert facts is not None and facts.label is not None
        assert not facts.label.vpn, sni


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=8))
def test_fuzz_what_follows_a_softether_shaped_hello(segments: list[bytes]) -> None:
    key = _key(Transport.TCP, 443)
    assert key.remote is not None
    d = Dissector()
    d.inspect(_ctx(key), bytes(TLS(msg=[_hello(str(key.remote.ip), alpn=())])))
    for i, seg in enumerate(segments, start=1):
        facts = d.inspect(_ctx(key, i), seg)
        if facts is not None and facts.label is not None:
            assert facts.label.name == "softether" and facts.done


def test_truncated_and_non_hello_records() -> None:
    raw = bytes(TLS(msg=[_hello("a.example")]))
    assert parse_client_hello_records(raw[:-5]) is NEED_MORE
    assert parse_client_hello_records(b"\x16\x03\x01\x00\x05\x02\x00\x00\x01\x00") is None


# ---------------------------------------------------------------- QUIC v1 (RFC 9001)

DCID = bytes.fromhex("8394c8f03e515708")


def test_initial_keys_match_rfc9001_appendix_a() -> None:
    keys = InitialKeys.derive(1, DCID)
    assert keys.key.hex() == "1f369613dd76d5467730efcbe3b1a22d"
    assert keys.iv.hex() == "fa044b2f42a3fd3b46fb255c"
    assert keys.hp.hex() == "9f50449e04a0e810283a1e9933adedd2"


def _varint2(n: int) -> bytes:
    return (0x4000 | n).to_bytes(2, "big")


def _crypto_frame(offset: int, data: bytes) -> bytes:
    return b"\x06" + _varint2(offset) + _varint2(len(data)) + data


def _initial(frames: bytes, pn: int) -> bytes:
    """Protect a client Initial exactly as RFC 9001 §5 says (independent of the dissector)."""
    key = bytes.fromhex("1f369613dd76d5467730efcbe3b1a22d")
    iv = bytes.fromhex("fa044b2f42a3fd3b46fb255c")
    hp = bytes.fromhex("9f50449e04a0e810283a1e9933adedd2")
    payload = frames + b"\x00" * max(0, 1162 - len(frames))
    pn_bytes = pn.to_bytes(4, "big")
    header = (
        b"\xc3"
        + (1).to_bytes(4, "big")
        + bytes([len(DCID)])
        + DCID
        + b"\x00"
        + b"\x00"
        + _varint2(len(pn_bytes) + len(payload) + 16)
        + pn_bytes
    )
    nonce = bytes(a ^ b for a, b in zip(iv, pn.to_bytes(12, "big"), strict=True))
    sealed = AESGCM(key).encrypt(nonce, payload, header)
    enc = Cipher(algorithms.AES(hp), modes.ECB()).encryptor()  # noqa: S305 - RFC 9001 header protection
    mask = enc.update(sealed[:16]) + enc.finalize()
    pn_off = len(header) - 4
    protected = bytearray(header)
    protected[0] ^= mask[0] & 0x0F
    for i in range(4):
        protected[pn_off + i] ^= mask[1 + i]
    return bytes(protected) + sealed


def test_quic_initial_is_decrypted_for_sni_and_alpn() -> None:
    hello = bytes(_hello("mail.example.org", alpn=(b"h3",)))
    facts = Dissector().inspect(_ctx(_key(Transport.UDP)), _initial(_crypto_frame(0, hello), 0))
    assert facts is not None and facts.label is not None
    assert facts.sni == "mail.example.org" and facts.alpn == ("h3",)
    assert (facts.label.name, facts.label.vpn) == ("quic", False)


def test_quic_client_hello_spread_over_two_initials_out_of_order() -> None:
    hello = bytes(_hello("relay.mullvad.net", alpn=(b"h3",)))
    cut = len(hello) // 2
    key = _key(Transport.UDP)
    d = Dissector()
    first = d.inspect(_ctx(key, 0), _initial(_crypto_frame(cut, hello[cut:]), 0))
    assert first is None or first.sni is None
    facts = d.inspect(_ctx(key, 1), _initial(_crypto_frame(0, hello[:cut]), 1))
    assert facts is not None and facts.sni == "relay.mullvad.net"
    assert facts.label is not None and facts.label.name == "mullvad" and facts.label.vpn


def test_corrupted_initial_gives_quic_without_a_name() -> None:
    packet = bytearray(_initial(_crypto_frame(0, bytes(_hello("x.example"))), 0))
    packet[-1] ^= 0xFF  # breaks the AEAD tag
    facts = Dissector().inspect(_ctx(_key(Transport.UDP)), bytes(packet))
    assert facts is None or facts.sni is None


def test_gquic_chlo_sni_is_read_in_clear() -> None:
    values = b"www.youtube.com" + b"Q035"
    chlo = (
        b"CHLO"
        + (2).to_bytes(2, "little")
        + b"\x00\x00"
        + b"SNI\x00"
        + (15).to_bytes(4, "little")
        + b"VER\x00"
        + (19).to_bytes(4, "little")
        + values
    )
    packet = b"\x0d" + b"\x11" * 8 + b"Q035" + b"\x01" + b"\x00" * 12 + chlo
    got = parse_gquic(packet)
    assert got is not None and got.version == "Q035" and got.sni == "www.youtube.com"
    assert parse_gquic(b"\x0d" + b"\x11" * 8 + b"HTTP" + b"\x00" * 20) is None


def _groups_hello(sni: str, groups: list[int], alpn: tuple[bytes, ...] = ()) -> bytes:
    hello = _hello(sni, alpn)
    hello.ext.append(TLS_Ext_SupportedGroups(groups=groups))
    return bytes(TLS(msg=[hello]))


# Tor's group lists (tortls_openssl.c): "P-256:X25519:P-224", "P-256:P-224", and with
# OpenSSL 3.5 "X25519MLKEM768 / SecP256r1MLKEM768 / P-256:X25519:P-224".
TOR_GROUPS = ([0x17, 0x1D, 0x15], [0x17, 0x15], [0x11EC, 0x11EB, 0x17, 0x1D, 0x15])


def test_tor_s_own_hello_is_tor_with_high_confidence_even_with_a_short_random_name() -> None:
    """A short random name ("www.gbh7oxdm.com") fails the name-only randomness test, but
    with Tor's groups and no ALPN the hello is Tor's: high confidence, the groups as
    evidence. The parser reads the groups in the client's order."""
    raw = _groups_hello("www.gbh7oxdm.com", [0x17, 0x1D, 0x15])
    hello = parse_client_hello_records(raw)
    assert isinstance(hello, ClientHello) and hello.groups == (0x17, 0x1D, 0x15)
    for i, groups in enumerate(TOR_GROUPS):
        key = FlowKey(
            Transport.TCP, Endpoint(parse_ip("192.0.2.10"), 53000 + i), _key(Transport.TCP).remote
        )
        facts = Dissector().inspect(_ctx(key), _groups_hello("www.gbh7oxdm.com", groups))
        assert facts is not None and facts.label is not None
        assert (facts.label.name, facts.label.confidence.value) == ("tor", "high"), groups
        assert "tls_groups" in [e.name for e in facts.label.evidence]


def test_one_or_two_of_tor_s_traits_are_not_tor_s_hello() -> None:
    """Tor's groups with an ALPN, a real-looking name or a .net name; P-224 elsewhere in
    the list; Tor's name shape with ordinary groups: none is the high-confidence Tor."""
    cases = [
        ("www.gbh7oxdm.com", [0x17, 0x1D, 0x15], (b"http/1.1",)),
        ("mail.example.com", [0x17, 0x1D, 0x15], ()),
        ("www.gbh7oxdm.net", [0x17, 0x1D, 0x15], ()),
        ("www.gbh7oxdm.com", [0x15, 0x17, 0x1D], ()),
        ("www.gbh7oxdm.com", [0x1D, 0x17, 0x18], ()),
    ]
    for i, (sni, groups, alpn) in enumerate(cases):
        key = FlowKey(
            Transport.TCP, Endpoint(parse_ip("192.0.2.10"), 54000 + i), _key(Transport.TCP).remote
        )
        facts = Dissector().inspect(_ctx(key), _groups_hello(sni, groups, alpn))
        assert facts is not None and facts.label is not None
        assert facts.label.confidence.value != "high" or facts.label.name != "tor", (sni, groups)


@given(st.binary(max_size=64))
def test_any_supported_groups_body_parses_or_is_left_out(body: bytes) -> None:
    """A damaged supported_groups extension never raises: its whole pairs are read."""
    hello = parse_client_hello_records(_groups_hello_raw(body))
    assert hello is None or isinstance(hello, ClientHello)


def _groups_hello_raw(body: bytes) -> bytes:
    hello = _hello("www.example.com", ())
    hello.ext.append(TLS_Ext_Unknown(type=10, val=body))
    return bytes(TLS(msg=[hello]))
