"""VPN signatures through the Dissector, each with a positive and a negative case.

Packets are built with scapy's layers where scapy has them (WireGuard, IKEv2, ISAKMP, L2TP,
PPTP, GRE) and with struct where it does not (OpenVPN per `ssl_pkt.h`, SoftEther PACK per
`Pack.c`), byte-exact to the layouts those sources give (docs/architecture.md, "Detection
facts and their sources").
"""

from __future__ import annotations

import random
import struct

from scapy.contrib.ikev2 import IKEv2
from scapy.contrib.wireguard import (
    Wireguard,
    WireguardInitiation,
    WireguardResponse,
    WireguardTransport,
)
from scapy.layers.inet import GRE
from scapy.layers.isakmp import ISAKMP
from scapy.layers.l2tp import L2TP
from scapy.layers.pptp import PPTPStartControlConnectionRequest

from netwatch.dissect import Dissector
from netwatch.dissect.names import classify_host
from netwatch.model import Endpoint, FlowKey, Label, PacketContext, PacketFacts, Transport, parse_ip

SID_C = bytes.fromhex("334857703d96db39")
SID_S = bytes.fromhex("d31c3a6964602fa0")


def _key(transport: Transport, cport: int, sport: int, client: str = "192.0.2.10") -> FlowKey:
    return FlowKey(
        transport, Endpoint(parse_ip(client), cport), Endpoint(parse_ip("198.51.100.7"), sport)
    )


def _run(
    key: FlowKey, packets: list[tuple[bool, bytes]], d: Dissector | None = None
) -> Label | None:
    """Feed (from_initiator, payload) packets like the flow table would; return the best label."""
    d = d or Dissector()
    index = [0, 0]
    best: Label | None = None
    for from_initiator, payload in packets:
        side = 0 if from_initiator else 1
        facts = d.inspect(PacketContext(key, from_initiator, index[side], 0.0), payload)
        index[side] += 1
        if isinstance(facts, PacketFacts) and facts.label is not None:
            best = facts.label
        if facts is not None and facts.done:
            break
    return best


def _is(label: Label | None, name: str, confidence: str) -> bool:
    return (
        label is not None
        and label.name == name
        and label.vpn
        and label.category in ("vpn", "anonymizer")
        and label.confidence.value == confidence
    )


# ---------------------------------------------------------------- OpenVPN


def _ovpn(
    opcode: int, sid: bytes, acks: tuple[int, ...] = (), remote: bytes = b"", pid: int = 0
) -> bytes:
    """opcode|key_id, session id, ACK array (count, ids, remote session id), packet id."""
    ack = bytes([len(acks)]) + b"".join(struct.pack(">I", a) for a in acks) + remote
    return bytes([opcode << 3]) + sid + ack + struct.pack(">I", pid)


def test_openvpn_udp_reset_answered_with_echoed_session_id_is_high() -> None:
    key = _key(Transport.UDP, 60201, 1194)
    label = _run(key, [(True, _ovpn(7, SID_C)), (False, _ovpn(8, SID_S, (0,), SID_C))])
    assert _is(label, "openvpn", "high")
    assert label is not None and ("ack_session_id", SID_C.hex()) in [
        (e.name, e.value) for e in label.evidence
    ]


def test_openvpn_one_way_capture_with_session_id_repeat_is_high() -> None:
    key = _key(Transport.UDP, 60201, 443)
    label = _run(key, [(True, _ovpn(7, SID_C)), (True, _ovpn(5, SID_C, (0,), SID_S, 1))])
    assert _is(label, "openvpn", "high")


def test_random_udp_starting_0x38_without_a_reply_is_not_openvpn() -> None:
    rng = random.Random(4)
    key = _key(Transport.UDP, 40000, 7777)
    packets = [(True, b"\x38" + rng.randbytes(40)) for _ in range(3)]
    label = _run(key, packets)
    assert label is None or not label.vpn


def test_a_lone_valid_client_reset_is_not_enough() -> None:
    key = _key(Transport.UDP, 40001, 1194)
    assert _run(key, [(True, _ovpn(7, SID_C))]) is None


def test_quic_short_headers_with_a_steady_connection_id_are_not_openvpn() -> None:
    rng = random.Random(9)
    dcid = rng.randbytes(8)
    packets = [(True, bytes([0x40]) + dcid + bytes(5) + rng.randbytes(60))]
    packets += [(True, bytes([0x58 | k]) + dcid + rng.randbytes(60)) for k in range(4)]
    label = _run(_key(Transport.UDP, 40002, 443), packets)
    assert label is None or label.name != "openvpn"


def test_openvpn_tls_auth_hmac_before_ack_array_still_matches() -> None:
    hmac, pid_time = bytes(range(20)), struct.pack(">II", 1, 1_700_000_000)
    client = bytes([7 << 3]) + SID_C + hmac + pid_time + b"\x00" + struct.pack(">I", 0)
    server = (
        bytes([8 << 3])
        + SID_S
        + hmac
        + pid_time
        + b"\x01"
        + struct.pack(">I", 0)
        + SID_C
        + struct.pack(">I", 0)
    )
    assert _is(
        _run(_key(Transport.UDP, 1, 1194), [(True, client), (False, server)]), "openvpn", "high"
    )


def test_openvpn_tcp_length_prefix() -> None:
    key = _key(Transport.TCP, 39772, 1194)
    hello = _ovpn(7, SID_C)
    framed = struct.pack(">H", len(hello)) + hello
    assert _is(_run(key, [(True, framed)]), "openvpn", "medium")
    reply = _ovpn(8, SID_S, (0,), SID_C)
    both = _run(key, [(True, framed), (False, struct.pack(">H", len(reply)) + reply)])
    assert _is(both, "openvpn", "high")
    wrong = struct.pack(">H", len(hello) + 9) + hello
    assert _run(_key(Transport.TCP, 39773, 1194), [(True, wrong)]) is None


# ---------------------------------------------------------------- WireGuard


def test_wireguard_handshake_pair_with_matching_index_is_high() -> None:
    init = bytes(Wireguard() / WireguardInitiation(sender_index=0x30D037D8))
    resp = bytes(
        Wireguard() / WireguardResponse(sender_index=0xAB7DF406, receiver_index=0x30D037D8)
    )
    assert len(init) == 148 and len(resp) == 92
    assert _is(
        _run(_key(Transport.UDP, 43462, 51820), [(True, init), (False, resp)]), "wireguard", "high"
    )


def test_wireguard_response_for_another_index_is_not_high() -> None:
    init = bytes(Wireguard() / WireguardInitiation(sender_index=1))
    resp = bytes(Wireguard() / WireguardResponse(sender_index=2, receiver_index=99))
    label = _run(_key(Transport.UDP, 43462, 51820), [(True, init), (False, resp)])
    assert label is not None and label.confidence.value == "medium"


def test_wireguard_transport_only_needs_both_directions() -> None:
    def data(idx: int, n: int) -> bytes:
        return bytes(
            Wireguard()
            / WireguardTransport(
                receiver_index=idx, counter=n, encrypted_encapsulated_packet=b"\x00" * 64
            )
        )

    key = _key(Transport.UDP, 36116, 51820)
    one_way = _run(key, [(True, data(7, 1)), (True, data(7, 2)), (True, data(7, 3))])
    assert one_way is None
    both = [(True, data(7, 1)), (False, data(9, 1)), (True, data(7, 2)), (False, data(9, 2))]
    assert _is(_run(key, both), "wireguard", "medium")


def test_148_bytes_that_are_not_wireguard() -> None:
    junk = b"\x01\xff\x00\x00" + bytes(144)
    assert _run(_key(Transport.UDP, 1000, 51820), [(True, junk)]) is None


# ---------------------------------------------------------------- IPsec


def test_ikev2_sa_init_on_500_and_natt_on_4500() -> None:
    sa_init = bytes(IKEv2(init_SPI=b"\xb6N\xf3!1\xa4\x89R", exch_type=34, flags="Initiator"))
    assert _is(_run(_key(Transport.UDP, 500, 500), [(True, sa_init)]), "ipsec", "high")
    auth = bytes(IKEv2(init_SPI=b"\xb6N\xf3!1\xa4\x89R", resp_SPI=b"\x01" * 8, exch_type=35, id=1))
    natt = _run(_key(Transport.UDP, 14500, 4500), [(True, b"\x00\x00\x00\x00" + auth)])
    assert _is(natt, "ipsec", "high")


def test_ikev1_main_mode() -> None:
    main = bytes(ISAKMP(init_cookie=b"\x11" * 8, exch_type=2, next_payload=1))
    assert _is(_run(_key(Transport.UDP, 500, 500), [(True, main)]), "ipsec", "high")


def test_random_bytes_on_udp_500_are_not_ike() -> None:
    assert _run(_key(Transport.UDP, 500, 500), [(True, bytes(range(40)))]) is None


def test_esp_and_ah_by_ip_protocol() -> None:
    esp = _run(
        _key(Transport.ESP, 0, 0), [(True, b"\x00\x00\x10\x01" + b"\x00\x00\x00\x01" + bytes(32))]
    )
    assert _is(esp, "ipsec", "high")
    ah = _run(
        _key(Transport.AH, 0, 0), [(True, b"\x32\x04\x00\x00" + b"\x00\x00\x10\x01" + bytes(24))]
    )
    assert _is(ah, "ipsec", "high")


# ---------------------------------------------------------------- L2TP, PPTP, GRE


def test_l2tp_control_message() -> None:
    sccrq = bytes(
        L2TP(hdr="control+length+sequence", tunnel_id=0, session_id=0) / (b"\x80\x08" + bytes(6))
    )
    assert _is(_run(_key(Transport.UDP, 1701, 1701), [(True, sccrq)]), "l2tp", "high")
    assert _run(_key(Transport.UDP, 1701, 1701), [(True, b"\xc8\x07" + bytes(10))]) is None


def test_pptp_control_and_gre_ppp() -> None:
    sccrq = bytes(PPTPStartControlConnectionRequest())
    assert sccrq[4:8] == b"\x1a\x2b\x3c\x4d"
    assert _is(_run(_key(Transport.TCP, 41366, 1723), [(True, sccrq)]), "pptp", "high")
    enhanced = bytes(GRE(key_present=1, version=1, proto=0x880B, key=0x00000001))
    assert _is(_run(_key(Transport.GRE, 0, 0), [(True, enhanced + b"\xff\x03")]), "pptp", "high")


def test_tcp_1723_without_the_magic_cookie_is_not_pptp() -> None:
    fake = struct.pack(">HHI", 156, 1, 0xDEADBEEF) + bytes(148)
    assert _run(_key(Transport.TCP, 41367, 1723), [(True, fake)]) is None


def test_ssh_banner_is_remote_access_not_vpn() -> None:
    key = _key(Transport.TCP, 58395, 22)
    label = _run(key, [(False, b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n"), (True, b"SSH-2.0-x\r\n")])
    assert label is not None and (label.name, label.vpn) == ("ssh", False)
    assert _run(_key(Transport.TCP, 58396, 22), [(True, b"HELLO-2.0\r\n")]) is None


def test_plain_gre_is_a_tunnel_but_not_a_vpn() -> None:
    label = _run(_key(Transport.GRE, 0, 0), [(True, bytes(GRE(proto=0x0800)) + bytes(20))])
    assert label is not None and (label.name, label.category, label.vpn) == (
        "gre",
        "network",
        False,
    )


# ---------------------------------------------------------------- SoftEther, tinc, names


def _pack(*elements: tuple[str, int, bytes]) -> bytes:
    """SoftEther PACK (Pack.c WriteElement): count, then name(len+1), type, 1 value."""
    out = struct.pack(">I", len(elements))
    for name, vtype, value in elements:
        out += struct.pack(">I", len(name) + 1) + name.encode() + struct.pack(">II", vtype, 1)
        out += value if vtype == 0 else struct.pack(">I", len(value)) + value
    return out


def test_softether_natt_connect_request_and_reply() -> None:
    request = _pack(
        ("opcode", 2, b"nat_t_connect_request"),
        ("target_hostname", 2, b"vpn123456789.opengw.net"),
        ("dest_ip", 2, b"203.0.113.50"),
        ("svc_name", 2, b"SoftEther_VPN"),
        ("nonce", 1, bytes(16)),
        ("port", 0, struct.pack(">I", 443)),
    )
    label = _run(_key(Transport.UDP, 40001, 5004), [(True, b"\x41"), (True, request)])
    assert _is(label, "softether", "high")
    assert label is not None and ("pack_target_hostname", "vpn123456789.opengw.net") in [
        (e.name, e.value) for e in label.evidence
    ]
    reply = _run(_key(Transport.UDP, 40002, 5004), [(False, b"IP=203.0.113.9,PORT=40002")])
    assert _is(reply, "softether", "high")


def test_rtp_on_5004_is_not_softether() -> None:
    rtp = b"\x80\x60\x00\x01" + bytes(8) + bytes(160)
    assert _run(_key(Transport.UDP, 5004, 5004), [(True, rtp)]) is None


def test_vpn_azure_actl_control_connection() -> None:
    label = _run(_key(Transport.TCP, 50000, 443), [(True, b"ACTL" + bytes(60))])
    assert _is(label, "softether", "high")


def test_tinc_meta_ids_then_udp_between_the_same_hosts() -> None:
    d = Dissector()
    tcp = _key(Transport.TCP, 50000, 655)
    label = _run(tcp, [(True, b"0 alice 17.7\n"), (False, b"0 bob 17.7\n")], d)
    assert _is(label, "tinc", "high")
    assert _is(_run(_key(Transport.UDP, 655, 655), [(True, bytes(48))], d), "tinc", "medium")
    assert _run(_key(Transport.TCP, 50001, 655), [(True, b"0 alice 18\n")]) is None


def test_provider_names_match_whole_labels_only() -> None:
    assert classify_host("api.NordVPN.com.") == "nordvpn"
    assert classify_host("vpn741799636.opengw.net") == "vpngate"
    assert classify_host("x1.x2.dev.servers.nat-traversal.softether-network.net") == "softether"
    assert classify_host("notnordvpn.com") is None
    assert classify_host("www.example.com") is None
