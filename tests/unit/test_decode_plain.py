"""The decoder's one-read IPv4 path against its general path.

`PacketDecoder._ipv4_plain` takes the common packet (no IP options, not a fragment, TCP or
UDP) in one `struct` read; everything it declines goes to `_ipv4_general`. Both must give the
same `PacketMeta` for every packet the plain path takes, and the plain path must take the
packets it exists for (else the speed-up silently stops). Headers are built field by field so
the edges (lengths past the frame, data offsets past the end, GTP-U ports, padding, odd
versions, fragments, DF) are reached, not only random bytes.
"""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from netwatch.model import PacketMeta
from netwatch.sources.decode import GTP_U_PORT, LINKTYPE_ETHERNET, PacketDecoder

_ETH = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00"


@st.composite
def ipv4_packets(draw: st.DrawFn) -> bytes:
    """An IPv4 packet whose fields are drawn around the plain path's conditions."""
    vihl = draw(st.sampled_from([0x45, 0x45, 0x45, 0x46, 0x44, 0x65, 0x4F]))
    proto = draw(st.sampled_from([6, 6, 17, 17, 1, 47, 50, 132]))
    frag = draw(st.sampled_from([0, 0, 0x4000, 0x2000, 0x0001, 0x6000, 0x8000, 0x1FFF]))
    port = st.one_of(st.integers(0, 65535), st.just(GTP_U_PORT), st.just(443))
    sport, dport = draw(port), draw(port)
    payload = draw(st.binary(max_size=64))
    if proto == 6:
        doff = draw(st.sampled_from([5, 5, 5, 8, 4, 0, 15]))
        flags = draw(st.integers(0, 255))
        l4 = struct.pack("!HHIIBBHHH", sport, dport, 1, 2, doff << 4, flags, 1024, 0, 0)
        l4 += b"\x01" * max(0, doff * 4 - 20)
    elif proto == 17:
        ulen = draw(st.one_of(st.just(8 + len(payload)), st.integers(0, 200)))
        l4 = struct.pack("!HHHH", sport, dport, ulen, 0)
    else:
        l4 = struct.pack("!HH", sport, dport) + bytes(draw(st.integers(0, 16)))
    options = b"\x01" * max(0, (vihl & 15) * 4 - 20)
    body = options + l4 + payload
    total = draw(st.one_of(st.just(20 + len(body)), st.integers(0, 20 + len(body) + 40)))
    src, dst = draw(st.binary(min_size=4, max_size=4)), draw(st.binary(min_size=4, max_size=4))
    header = struct.pack("!BBHHHBBH4s4s", vihl, 0, total, 7, frag, 64, proto, 0, src, dst)
    packet = header + body
    cut = draw(st.integers(0, len(packet)))
    padding = draw(st.binary(max_size=24))
    return draw(st.sampled_from([packet, packet[:cut], packet + padding]))


@settings(max_examples=600, deadline=None)
@given(packet=ipv4_packets(), ts=st.floats(0, 2e9), ifname=st.sampled_from([None, "eth0"]))
def test_plain_path_equals_general_path(packet: bytes, ts: float, ifname: str | None) -> None:
    frame = _ETH + packet
    general = PacketDecoder()._ipv4_general(frame, 14, ts, ifname)
    decoded = PacketDecoder().decode(LINKTYPE_ETHERNET, frame, ts, ifname)
    assert decoded == general
    if len(packet) >= 34:
        plain = PacketDecoder()._ipv4_plain(frame, 14, ts, ifname)
        assert plain is None or plain == general


def _tcp_packet(payload: bytes) -> bytes:
    l4 = struct.pack("!HHIIBBHHH", 40000, 443, 1, 2, 0x50, 0x18, 1024, 0, 0) + payload
    return (
        struct.pack(
            "!BBHHHBBH4s4s",
            0x45,
            0,
            20 + len(l4),
            7,
            0x4000,
            64,
            6,
            0,
            b"\xc0\x00\x02\x01",
            b"\xcb\x00\x71\x05",
        )
        + l4
    )


def _udp_packet(payload: bytes) -> bytes:
    l4 = struct.pack("!HHHH", 5353, 53, 8 + len(payload), 0) + payload
    return (
        struct.pack(
            "!BBHHHBBH4s4s",
            0x45,
            0,
            20 + len(l4),
            7,
            0,
            64,
            17,
            0,
            b"\xc0\x00\x02\x01",
            b"\xcb\x00\x71\x05",
        )
        + l4
    )


def test_plain_path_takes_ordinary_tcp_and_udp() -> None:
    decoder = PacketDecoder()
    for packet, transport in ((_tcp_packet(b"hello"), "tcp"), (_udp_packet(b"q" * 30), "udp")):
        frame = _ETH + packet + bytes(6)  # Ethernet padding after the IP packet
        plain = decoder._ipv4_plain(frame, 14, 1.0, "eth0")
        assert isinstance(plain, PacketMeta)
        assert plain.transport.value == transport
        assert plain == PacketDecoder()._ipv4_general(frame, 14, 1.0, "eth0")
    assert plain.payload == b"q" * 30 and str(plain.src.ip) == "192.0.2.1"


def test_plain_path_leaves_gtp_fragments_and_options_to_the_general_path() -> None:
    decoder = PacketDecoder()
    gtp = bytearray(_udp_packet(bytes(16)))
    gtp[22:24] = GTP_U_PORT.to_bytes(2, "big")
    fragment = bytearray(_tcp_packet(b"x" * 20))
    fragment[6] = 0x20  # more fragments
    options = bytearray(_tcp_packet(b"x" * 20))
    options[0] = 0x46
    for packet in (gtp, fragment, options):
        assert decoder._ipv4_plain(_ETH + bytes(packet), 14, 1.0, None) is None
