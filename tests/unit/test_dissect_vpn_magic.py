"""Protocols with their own magic: Tailscale DISCO, AnyConnect CSTP/DTLS, SSTP in clear HTTP,
and OpenVPN 2.6 tls-crypt-v2 client resets, each with positives and ordinary-traffic negatives.

Packets follow the public formats: DISCO per tailscale `disco/disco.go` (magic `TS💬`, 32-byte
key, 24-byte nonce, box), CSTP per the OpenConnect protocol draft, DTLS per RFC 6347, and the
tls-crypt-v2 reset per OpenVPN's `doc/tls-crypt-v2.txt` with the packet id OpenVPN 2.6.14 sends
(0x0f000001, checked against a real pair in tests/live/test_vpn_magic_captures.py).
"""

from __future__ import annotations

import random
import struct

from scapy.contrib.wireguard import Wireguard, WireguardInitiation, WireguardResponse
from scapy.layers.dns import DNS, DNSQR
from scapy.layers.tls.record import TLS

from netwatch.dissect import Dissector, anyconnect, openvpn, tailscale
from netwatch.dissect.http import parse_request
from netwatch.model import Label, PacketContext, Transport
from tests.unit.test_dissect_tls_quic import _crypto_frame, _hello, _initial
from tests.unit.test_dissect_vpn import SID_C, SID_S, _is, _key, _run

RNG = random.Random(41641)
DISCO_KEY = RNG.randbytes(32)


def _disco(key: bytes = DISCO_KEY, body: int = 46) -> bytes:
    """A DISCO packet: magic, sender key, nonce, sealed message (tag + `body` bytes)."""
    return b"TS\xf0\x9f\x92\xac" + key + RNG.randbytes(24) + RNG.randbytes(16 + body)


INIT = bytes(Wireguard() / WireguardInitiation(sender_index=0x11223344))
RESP = bytes(Wireguard() / WireguardResponse(sender_index=0x55667788, receiver_index=0x11223344))


def _evidence(label: Label | None) -> dict[str, str]:
    assert label is not None
    return {e.name: e.value for e in label.evidence}


# ---------------------------------------------------------------- Tailscale


def test_disco_then_wireguard_on_one_flow_is_tailscale_with_both_proofs() -> None:
    key = _key(Transport.UDP, 41641, 41641)
    packets = [(True, _disco()), (False, _disco(RNG.randbytes(32), 30)), (True, INIT)]
    packets += [(False, RESP)]
    label = _run(key, packets)
    assert _is(label, "tailscale", "high")
    ev = _evidence(label)
    assert ev["disco_magic"] == "TS💬" and ev["disco_key"] == DISCO_KEY[:8].hex()
    assert ev["tunnel"] == "wireguard" and ev["receiver_index"] == "11223344"


def test_disco_alone_is_tailscale() -> None:
    label = _run(_key(Transport.UDP, 41641, 41641), [(True, _disco())])
    assert _is(label, "tailscale", "high")
    assert "tunnel" not in _evidence(label)


def test_disco_between_the_wireguard_handshake_messages_does_not_break_it() -> None:
    key = _key(Transport.UDP, 51820, 41641)
    label = _run(key, [(True, INIT), (False, _disco()), (False, RESP)])
    assert _is(label, "tailscale", "high")
    assert _evidence(label)["receiver_index"] == "11223344"  # the response still matched


def test_wireguard_proven_first_then_disco_becomes_tailscale() -> None:
    d = Dissector()
    key = _key(Transport.UDP, 41641, 41641)
    assert _is(_run(key, [(True, INIT), (False, RESP)], d), "wireguard", "high")
    label = _run(key, [(True, _disco())], d)  # index restarts: a fresh direction view is fine
    assert _is(label, "tailscale", "high")
    assert _evidence(label)["receiver_index"] == "11223344"


def test_wireguard_after_other_first_datagrams_is_still_found_but_only_early() -> None:
    junk = [(True, RNG.randbytes(60)), (False, RNG.randbytes(60))]
    late = _run(_key(Transport.UDP, 40000, 51820), [*junk, (True, INIT), (False, RESP)])
    assert _is(late, "wireguard", "high")
    four = [(side, RNG.randbytes(60)) for _ in range(4) for side in (True, False)]
    assert _run(_key(Transport.UDP, 40001, 51820), [*four, (True, INIT), (False, RESP)]) is None


def test_short_or_wrong_magic_is_not_disco() -> None:
    assert tailscale.disco_sender(_disco()[: tailscale.MIN_LEN - 1]) is None
    assert tailscale.disco_sender(b"TS\xf0\x9f\x92\xad" + bytes(100)) is None
    assert tailscale.disco_sender(_disco()) == DISCO_KEY


# ---------------------------------------------------------------- ordinary traffic


def _ordinary() -> list[tuple[str, Transport, int, list[tuple[bool, bytes]]]]:
    """HTTPS, QUIC, DNS, SSH, RTP video and a plain proxy CONNECT: none is a VPN."""
    hello = bytes(TLS(msg=[_hello("www.example.com")]))
    quic = _initial(_crypto_frame(0, bytes(_hello("video.example.net", alpn=(b"h3",)))), 0)
    dns = bytes(DNS(id=7, rd=1, qd=DNSQR(qname="www.example.com")))
    rtp = [
        (True, struct.pack(">BBHII", 0x80, 96, n, 9000 * n, 0xCAFE) + RNG.randbytes(1100))
        for n in range(8)
    ]
    connect = b"CONNECT www.example.com:443 HTTP/1.1\r\nHost: www.example.com:443\r\n\r\n"
    return [
        ("https", Transport.TCP, 443, [(True, hello), (False, b"\x16\x03\x03" + bytes(90))]),
        ("quic", Transport.UDP, 443, [(True, quic), (False, b"\xc1" + RNG.randbytes(1200))]),
        ("dns", Transport.UDP, 53, [(True, dns)]),
        ("ssh", Transport.TCP, 22, [(True, b"SSH-2.0-OpenSSH_9.2p1\r\n")]),
        ("video", Transport.UDP, 5004, rtp + [(False, RNG.randbytes(80)) for _ in range(6)]),
        ("proxy", Transport.TCP, 3128, [(True, connect), (True, hello)]),
        ("udp", Transport.UDP, 41641, [(s, RNG.randbytes(200)) for s in (True, False) * 4]),
    ]


def test_ordinary_traffic_gets_no_vpn_label() -> None:
    for name, transport, port, packets in _ordinary():
        label = _run(_key(transport, 50123, port), packets)
        assert label is None or not label.vpn, (name, label)


# ---------------------------------------------------------------- AnyConnect


CSTP = (
    b"CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\nHost: vpn.example.net\r\n"
    b"User-Agent: Cisco AnyConnect VPN Agent for Linux 4.10\r\nX-CSTP-Version: 1\r\n"
    b"X-CSTP-Hostname: laptop\r\nX-CSTP-MTU: 1399\r\nX-CSTP-Address-Type: IPv6,IPv4\r\n"
    b"X-DTLS-Master-Secret: " + RNG.randbytes(48).hex().encode() + b"\r\n"
    b"X-DTLS-CipherSuite: AES256-SHA:AES128-SHA\r\n\r\n"
)


def _dtls_hello(version: int = 0xFEFF) -> bytes:
    body = b"\x01" + RNG.randbytes(120)
    return (
        struct.pack(">BHH", 0x16, version, 0)
        + (0).to_bytes(6, "big")
        + struct.pack(">H", len(body))
        + body
    )


def test_cstp_tunnel_request_is_anyconnect_and_its_dtls_follows() -> None:
    d = Dissector()
    tcp = _key(Transport.TCP, 50500, 443)
    label = _run(tcp, [(True, CSTP)], d)
    assert _is(label, "anyconnect", "high")
    ev = _evidence(label)
    assert ev["http_request"] == "CONNECT /CSCOSSLC/tunnel HTTP/1.1"
    assert "x-cstp-version" in ev["cstp_headers"] and "x-dtls-master-secret" in ev["cstp_headers"]
    dtls = _run(_key(Transport.UDP, 50501, 443), [(True, _dtls_hello())], d)
    assert _is(dtls, "anyconnect", "medium")
    assert _evidence(dtls)["dtls_record"] == "handshake v1.0"


def test_dtls_without_a_cstp_session_is_not_anyconnect() -> None:
    label = _run(_key(Transport.UDP, 50502, 443), [(True, _dtls_hello(0xFEFD))])
    assert label is None or not label.vpn
    assert anyconnect.dtls_record(_dtls_hello(0xFEFD)) == "handshake v1.2"
    assert anyconnect.dtls_record(b"\x16\x03\x03" + bytes(40)) is None  # TLS, not DTLS


def test_cstp_without_dtls_offer_does_not_claim_later_udp() -> None:
    d = Dissector()
    no_dtls = CSTP.split(b"X-DTLS-")[0] + b"\r\n"
    assert _is(_run(_key(Transport.TCP, 50503, 443), [(True, no_dtls)], d), "anyconnect", "high")
    label = _run(_key(Transport.UDP, 50504, 443), [(True, _dtls_hello())], d)
    assert label is None or label.name != "anyconnect"


def test_cstp_headers_are_parsed_and_other_x_headers_ignored() -> None:
    request = parse_request(CSTP)
    assert request is not None and request.cstp_headers[0] == "x-cstp-version"
    plain = parse_request(b"GET / HTTP/1.1\r\nHost: a.example\r\nX-Custom-Cstp: 1\r\n\r\n")
    assert plain is not None and plain.cstp_headers == ()
    label = _run(_key(Transport.TCP, 50505, 80), [(True, b"GET /CSCOSSLC/tunnel HTTP/1.1\r\n\r\n")])
    assert label is not None and not label.vpn  # the path alone, without CONNECT or headers


# ---------------------------------------------------------------- SSTP in clear HTTP


def test_sstp_duplex_post_over_plain_http_is_sstp() -> None:
    request = (
        b"SSTP_DUPLEX_POST /sra_{BA195980-CD49-458b-9E23-C84EE0ADCD75}/ HTTP/1.1\r\n"
        b"Host: vpn.example.net\r\nContent-Length: 18446744073709551615\r\n"
        b"SSTPCORRELATIONID: {4E1C8E4C-5B5D-4D58-9B2A-3A5C6F1E2D3C}\r\n\r\n"
    )
    label = _run(_key(Transport.TCP, 50600, 80), [(True, request)])
    assert _is(label, "sstp", "high")
    other = _run(_key(Transport.TCP, 50601, 80), [(True, b"POST /sra_x/ HTTP/1.1\r\n\r\n")])
    assert other is not None and not other.vpn


# ---------------------------------------------------------------- OpenVPN tls-crypt-v2


def _v3_reset(packet_id: int, wkc_len: int = 299, tail: int = 0) -> bytes:
    """A 2.6 client reset: opcode 10, session id, packet id, time, tag, 5 bytes, WKc."""
    wkc = RNG.randbytes(wkc_len - 2) + struct.pack(">H", wkc_len + tail)
    head = bytes([10 << 3]) + SID_C + struct.pack(">II", packet_id, 1_764_000_000)
    return head + RNG.randbytes(32) + RNG.randbytes(5) + wkc


def _tls_crypt(opcode: int, sid: bytes, packet_id: int = 1) -> bytes:
    head = bytes([opcode << 3]) + sid + struct.pack(">II", packet_id, 1_764_000_000)
    return head + RNG.randbytes(32 + 5 + 12)


def test_openvpn_26_tls_crypt_v2_reset_is_recognised() -> None:
    for packet_id, wrapping in (
        (0x0F000001, "tls-crypt-v2, early negotiation"),
        (1, "tls-crypt-v2"),
    ):
        reset = _v3_reset(packet_id)
        assert openvpn.reset_opcode(reset) == 10
        assert openvpn.reset_layout(reset) == wrapping
        key = _key(Transport.UDP, 58750, 1194)
        pair = _run(key, [(True, reset), (False, _tls_crypt(8, SID_S))])
        assert _is(pair, "openvpn", "medium")
        assert _evidence(pair)["opcode"] == "P_CONTROL_HARD_RESET_CLIENT_V3"
        wkc = _tls_crypt(11, SID_C, packet_id + 1)
        assert _is(
            _run(key, [(True, reset), (False, _tls_crypt(8, SID_S)), (True, wkc)]),
            "openvpn",
            "high",
        )


def test_openvpn_26_tls_crypt_v2_over_tcp_where_the_server_reset_is_numbered_alike() -> None:
    def framed(packet: bytes) -> bytes:
        return struct.pack(">H", len(packet)) + packet

    key = _key(Transport.TCP, 54760, 1194)
    server = _tls_crypt(8, SID_S, 0x0F000001)
    assert openvpn.reset_layout(server) == "tls-crypt"
    packets = [(True, framed(_v3_reset(0x0F000001))), (False, framed(server))]
    packets.append((True, framed(_tls_crypt(4, SID_C, 0x0F000002))))
    assert _is(_run(key, packets), "openvpn", "high")


def test_tls_crypt_v2_reset_whose_fields_do_not_add_up_is_rejected() -> None:
    assert openvpn.reset_opcode(_v3_reset(0x0F000100)) is None  # not an early packet id
    assert openvpn.reset_opcode(_v3_reset(2)) is None
    assert openvpn.reset_opcode(_v3_reset(0x0F000001, tail=40)) is None  # WKc longer than packet
    assert openvpn.reset_opcode(_v3_reset(0x0F000001, wkc_len=100)) is None  # too short a WKc
    random_v3 = bytes([0x50]) + RNG.randbytes(352)
    assert openvpn.reset_opcode(random_v3) is None


def test_unrecognised_udp_is_given_up_after_the_wireguard_tries() -> None:
    d = Dissector()
    key = _key(Transport.UDP, 40002, 9999)
    for index in range(3):
        for side in (True, False):
            facts = d.inspect(PacketContext(key, side, index), RNG.randbytes(80))
            assert facts is None or not facts.done, index
    last = d.inspect(PacketContext(key, True, 3), RNG.randbytes(80))
    assert last is not None and last.done and last.label is None


# ---------------------------------------------------------------- UltraSurf (US-1)

ULTRASURF = bytes.fromhex("cc1c30415ba43866")


def test_stream_opening_with_the_ultrasurf_magic_is_an_anonymizer() -> None:
    key = _key(Transport.TCP, 50123, 443)
    label = _run(key, [(True, ULTRASURF + RNG.randbytes(120)), (False, RNG.randbytes(300))])
    assert _is(label, "ultrasurf", "high")
    assert label is not None and label.category == "anonymizer" and label.vpn
    assert _evidence(label) == {"magic": "cc1c30415ba43866"}


def test_ultrasurf_magic_only_counts_at_the_stream_start_and_in_full() -> None:
    key = _key(Transport.TCP, 50124, 443)
    assert _run(key, [(True, ULTRASURF[:7])]) is None  # cut short
    key = _key(Transport.TCP, 50125, 443)
    assert _run(key, [(True, b"\x00" + ULTRASURF + RNG.randbytes(40))]) is None  # not at start
    key = _key(Transport.TCP, 50126, 443)
    later = [(True, RNG.randbytes(64)), (False, RNG.randbytes(64)), (True, ULTRASURF)]
    label = _run(key, later)
    assert label is None or label.name != "ultrasurf"  # only a stream's first bytes
