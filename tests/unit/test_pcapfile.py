"""The capture-file reader: every link type, both formats, fragments, and bad files.

Captures are written by scapy (byte-exact frames) or, where scapy cannot express a detail
(pcapng options, big-endian sections, LOOP link type), by hand with struct per the spec.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.contrib.gtp import GTP_U_Header, GTPPDUSessionContainer
from scapy.layers.dot11 import Dot11, Dot11QoS, RadioTap
from scapy.layers.inet import ICMP, IP, TCP, UDP, fragment
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop
from scapy.layers.l2 import (
    GRE,
    LLC,
    SNAP,
    CookedLinux,
    CookedLinuxV2,
    Dot1AD,
    Dot1Q,
    Ether,
    Loopback,
)
from scapy.layers.ppi import PPI
from scapy.layers.ppp import PPP, PPPoE
from scapy.packet import Packet, Raw
from scapy.utils import wrpcap, wrpcapng

from netwatch.model import Transport
from netwatch.sources.decode import PacketDecoder
from netwatch.sources.pcapfile import CaptureFile, PcapError, read_packets

UDP_PKT = IP(src="192.0.2.1", dst="198.51.100.7") / UDP(sport=40000, dport=1194) / Raw(b"\x38ab")
TCP_PKT = IP(src="192.0.2.1", dst="203.0.113.5") / TCP(sport=50000, dport=443, flags="S")


def _eth() -> Ether:
    """Fixed MACs, so scapy does not look up routes or ARP for them."""
    return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")


def _wifi_data(*, qos: bool = True) -> Packet:
    """An 802.11 data frame to the access point (QoS or not) with its LLC/SNAP header."""
    head = Dot11(type=2, subtype=8 if qos else 0, FCfield="to_DS")
    return (head / Dot11QoS() if qos else head) / LLC() / SNAP()


def _eth_parse(raw: bytes) -> Ether:
    return Ether(raw)


def _write(tmp_path: Path, pkts: list[Packet], **kw: object) -> Path:
    path = tmp_path / "c.pcap"
    for i, p in enumerate(pkts):
        p.time = 1_700_000_000 + i
    wrpcap(str(path), pkts, **kw)
    return path


def _metas(path: Path) -> list:
    return list(read_packets(path))


@pytest.mark.parametrize(
    ("frame", "linktype"),
    [
        (_eth() / UDP_PKT, None),
        (_eth() / Dot1Q(vlan=7) / UDP_PKT, None),
        (_eth() / Dot1AD(vlan=3) / Dot1Q(vlan=7) / UDP_PKT, None),
        (_eth() / PPPoE(sessionid=9) / PPP(proto=0x0021) / UDP_PKT, None),
        (CookedLinux(proto=0x0800) / UDP_PKT, 113),
        (CookedLinuxV2(proto=0x0800, ifindex=2) / UDP_PKT, 276),
        (UDP_PKT, 101),
        (UDP_PKT, 12),
        (UDP_PKT, 228),
        (Loopback(type=2) / UDP_PKT, 0),
        (PPP(proto=0x0021) / UDP_PKT, 9),
        (PPPoE(sessionid=9) / PPP(proto=0x0021) / UDP_PKT, 51),
        (Raw(b"\x0f\x00\x08\x00") / UDP_PKT, 104),  # Cisco HDLC: address, control, ethertype
        (PPI() / _wifi_data() / UDP_PKT, None),
        (PPI(dlt=1) / _eth() / UDP_PKT, None),
        (RadioTap() / _wifi_data() / UDP_PKT, None),
        (_wifi_data(qos=False) / UDP_PKT, None),
    ],
    ids=[
        "ethernet",
        "vlan",
        "qinq",
        "pppoe",
        "sll",
        "sll2",
        "raw101",
        "raw12",
        "ipv4",
        "null",
        "ppp",
        "ppp-ether",
        "cisco-hdlc",
        "ppi-80211",
        "ppi-ethernet",
        "radiotap",
        "80211",
    ],
)
def test_udp_through_each_link_type(tmp_path: Path, frame: Packet, linktype: int | None) -> None:
    kw = {} if linktype is None else {"linktype": linktype}
    (meta,) = _metas(_write(tmp_path, [frame], **kw))
    assert meta.transport is Transport.UDP
    assert str(meta.src) == "192.0.2.1:40000"
    assert str(meta.dst) == "198.51.100.7:1194"
    assert meta.payload == b"\x38ab"
    assert meta.length == len(UDP_PKT)
    assert meta.ts == 1_700_000_000


def test_wifi_frames_without_readable_ip_are_skipped() -> None:
    dec = PacketDecoder()
    ip = bytes(UDP_PKT)
    protected = Dot11(type=2, FCfield="to_DS+protected") / LLC() / SNAP() / UDP_PKT
    beacon = Dot11(type=0, subtype=8) / Raw(ip)
    null = Dot11(type=2, subtype=4, FCfield="to_DS")
    for frame in (protected, beacon, null, Dot11(type=2) / Raw(ip)):  # the last has no SNAP
        assert dec.decode(105, bytes(frame), 0.0) is None
        assert dec.decode(192, bytes(PPI() / frame), 0.0) is None
    # A PPI header naming PPI again, or shorter than itself, is refused rather than followed.
    assert dec.decode(192, bytes(PPI(dlt=192) / PPI(dlt=1) / _eth() / UDP_PKT), 0.0) is None
    assert (
        dec.decode(192, b"\x00\x00\x04\x00\x01\x00\x00\x00" + bytes(_eth() / UDP_PKT), 0.0) is None
    )


GTP_INNER = IP(src="10.45.0.7", dst="198.51.100.9") / UDP(sport=5353, dport=443) / Raw(b"quic")


@pytest.mark.parametrize(
    "gtp",
    [
        GTP_U_Header(teid=0x1234) / GTP_INNER,
        # 5G: a PDU session container extension header (QFI 9) before the user's packet.
        GTP_U_Header(teid=7, E=1, next_ex=0x85) / GTPPDUSessionContainer(QFI=9) / GTP_INNER,
        GTP_U_Header(teid=7, S=1, seq=99)
        / IPv6(src="2001:db8::7", dst="2001:db8::9")
        / UDP(sport=5353, dport=443)
        / Raw(b"quic"),
    ],
    ids=["plain", "extension-header", "sequence-ipv6"],
)
def test_gtp_u_is_decapsulated_to_the_users_packet(tmp_path: Path, gtp: Packet) -> None:
    outer = IP(src="192.0.2.50", dst="192.0.2.60") / UDP(sport=2152, dport=2152) / gtp
    (meta,) = _metas(_write(tmp_path, [_eth() / outer]))
    assert meta.transport is Transport.UDP and meta.payload == b"quic"
    assert (meta.src.port, meta.dst.port) == (5353, 443)
    assert str(meta.dst.ip) in ("198.51.100.9", "2001:db8::9")
    assert meta.length in (len(GTP_INNER), 40 + 8 + 4)  # the inner packet's own length


def test_gtp_that_is_not_user_data_stays_the_tunnel_flow() -> None:
    dec = PacketDecoder()
    outer = IP(src="192.0.2.50", dst="192.0.2.60") / UDP(sport=2152, dport=2152)
    echo = bytes(outer / GTP_U_Header(gtp_type=1, teid=0) / Raw(b"\x00" * 4))  # echo request
    garbage = bytes(outer / GTP_U_Header(teid=1) / Raw(b"\x99" * 20))  # not IP inside
    cut = bytes(outer / GTP_U_Header(teid=1, E=1, next_ex=0x85) / Raw(b"\x05"))  # ext cut
    for frame in (echo, garbage, cut):
        meta = dec.decode(101, frame, 0.0)
        assert meta is not None and meta.dst.port == 2152 and str(meta.dst.ip) == "192.0.2.60"


def test_gtp_nested_deeper_than_the_limit_is_not_followed() -> None:
    pkt: Packet = GTP_INNER
    for _ in range(40):
        pkt = (
            IP(src="192.0.2.50", dst="192.0.2.60")
            / UDP(sport=2152, dport=2152)
            / GTP_U_Header()
            / pkt
        )
    meta = PacketDecoder().decode(101, bytes(pkt), 0.0)
    assert meta is not None and meta.dst.port == 2152  # a tunnel two levels in, not a crash


def test_ppp_with_hdlc_prefix_and_compressed_protocol() -> None:
    dec = PacketDecoder()
    ip = bytes(UDP_PKT)
    for frame in (b"\xff\x03\x00\x21" + ip, b"\x21" + ip, b"\xff\x03\x21" + ip):
        meta = dec.decode(9, frame, 1.0)
        assert meta is not None and meta.dst.port == 1194


def test_loop_link_type_is_big_endian_family(tmp_path: Path) -> None:
    dec = PacketDecoder()
    v6 = bytes(IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP(sport=5, dport=6))
    assert dec.decode(108, struct.pack(">I", 2) + bytes(UDP_PKT), 0.0) is not None
    meta = dec.decode(108, struct.pack(">I", 24) + v6, 0.0)
    assert meta is not None and str(meta.src.ip) == "2001:db8::1"
    # NULL is host order: either order of AF_INET6 (28 = FreeBSD, 30 = macOS) decodes.
    assert dec.decode(0, struct.pack("<I", 30) + v6, 0.0) is not None
    assert dec.decode(0, struct.pack(">I", 28) + v6, 0.0) is not None
    assert dec.decode(0, struct.pack("<I", 7) + v6, 0.0) is None


def test_tcp_fields_ipv6_and_extension_headers(tmp_path: Path) -> None:
    pkts = [
        _eth() / TCP_PKT,
        Ether()
        / IPv6(src="2001:db8::1", dst="2001:db8::2")
        / IPv6ExtHdrHopByHop()
        / TCP(sport=1, dport=2, flags="PA")
        / Raw(b"GET /"),
        _eth() / IP(src="192.0.2.1", dst="192.0.2.9") / ICMP() / Raw(b"ping"),
        _eth() / IP(src="192.0.2.1", dst="192.0.2.9", proto=50) / Raw(b"\x00\x00\x10\x01spi"),
        _eth() / IP(src="192.0.2.1", dst="192.0.2.9") / GRE(proto=0x880B) / Raw(b"x"),
    ]
    tcp, tcp6, icmp, esp, gre = _metas(_write(tmp_path, pkts))
    assert tcp.transport is Transport.TCP and tcp.tcp_flags == 0x02 and tcp.payload == b""
    assert tcp6.transport is Transport.TCP and tcp6.payload == b"GET /" and tcp6.ip_proto == 6
    assert tcp6.length == len(pkts[1][IPv6])
    assert icmp.transport is Transport.ICMP and icmp.src.port == 0 and icmp.payload[8:] == b"ping"
    assert esp.transport is Transport.ESP and esp.payload == b"\x00\x00\x10\x01spi"
    assert gre.transport is Transport.GRE and gre.payload[2:4] == b"\x88\x0b"


def test_ethernet_padding_is_not_payload(tmp_path: Path) -> None:
    small = _eth() / IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=1, dport=2) / b"ab"
    padded = _eth_parse(bytes(small) + b"\x00" * 16)  # padded to the 60-byte Ethernet minimum
    (meta,) = _metas(_write(tmp_path, [padded]))
    assert meta.payload == b"ab"
    assert meta.length == 30


def test_fragments_count_bytes_and_keep_ports(tmp_path: Path) -> None:
    big = (
        IP(src="192.0.2.1", dst="198.51.100.7", id=77) / UDP(sport=4000, dport=500) / (b"z" * 3000)
    )
    frags = fragment(big, fragsize=1000)
    assert len(frags) == 4
    metas = _metas(_write(tmp_path, [_eth() / f for f in frags]))
    assert [m.dst.port for m in metas] == [500] * 4
    assert sum(m.length for m in metas) == sum(len(f) for f in frags)
    assert metas[0].payload.startswith(b"z") and all(m.payload == b"" for m in metas[1:])


def test_ipv6_non_first_fragment_has_no_payload(tmp_path: Path) -> None:
    frame = (
        Ether()
        / IPv6(src="2001:db8::1", dst="2001:db8::2")
        / IPv6ExtHdrFragment(offset=100, nh=17)
        / Raw(b"y" * 40)
    )
    (meta,) = _metas(_write(tmp_path, [frame]))
    assert meta.transport is Transport.UDP and meta.payload == b"" and meta.length == 88


def test_non_ip_frames_are_skipped_and_counted(tmp_path: Path) -> None:
    from scapy.layers.l2 import ARP

    path = _write(tmp_path, [_eth() / ARP(), _eth() / UDP_PKT])
    with CaptureFile(path) as cap:
        metas = list(cap)
    assert len(metas) == 1 and cap.frames == 2 and cap.skipped == 1


def test_nanosecond_and_big_endian_pcap(tmp_path: Path) -> None:
    frame = bytes(_eth() / UDP_PKT)
    for magic, order, frac, expect in (
        (0xA1B23C4D, "<", 250_000_000, 10.25),
        (0xA1B2C3D4, ">", 500_000, 10.5),
        (0xA1B23C4D, ">", 1, 10.000000001),
    ):
        path = tmp_path / f"{magic}{order}.pcap"
        header = struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 65535, 1)
        record = struct.pack(order + "IIII", 10, frac, len(frame), len(frame))
        path.write_bytes(header + record + frame)
        (meta,) = _metas(path)
        assert meta.ts == pytest.approx(expect, abs=1e-9)


def _ng_block(order: str, btype: int, body: bytes) -> bytes:
    body += b"\x00" * (-len(body) % 4)
    length = len(body) + 12
    return struct.pack(order + "II", btype, length) + body + struct.pack(order + "I", length)


def _ng_option(order: str, code: int, value: bytes) -> bytes:
    return struct.pack(order + "HH", code, len(value)) + value + b"\x00" * (-len(value) % 4)


def _pcapng(order: str, frame: bytes, tsresol: int, ticks: int) -> bytes:
    shb = _ng_block(order, 0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1))
    opts = (
        _ng_option(order, 2, b"wg0")
        + _ng_option(order, 9, bytes([tsresol]))
        + _ng_option(order, 0, b"")
    )
    idb = _ng_block(order, 1, struct.pack(order + "HHI", 101, 0, 0) + opts)
    epb = _ng_block(
        order,
        6,
        struct.pack(order + "IIIII", 0, ticks >> 32, ticks & 0xFFFFFFFF, len(frame), len(frame))
        + frame,
    )
    spb = _ng_block(order, 3, struct.pack(order + "I", len(frame)) + frame)
    nrb = _ng_block(order, 4, b"\x00" * 4)  # name resolution block: skipped
    return shb + idb + nrb + epb + spb


@pytest.mark.parametrize("order", ["<", ">"])
def test_pcapng_by_hand_with_options(tmp_path: Path, order: str) -> None:
    path = tmp_path / "c.pcapng"
    frame = bytes(UDP_PKT)
    # if_tsresol 0x83: 2^-3 s ticks; 100 ticks = 12.5 s.
    path.write_bytes(_pcapng(order, frame, 0x83, 100) * 2)  # two sections
    metas = _metas(path)
    assert [m.ts for m in metas] == [12.5, 0.0, 12.5, 0.0]
    assert {m.interface for m in metas} == {"wg0"}
    assert all(m.dst.port == 1194 for m in metas)


@pytest.mark.parametrize("code", [9, 14], ids=["if_tsresol", "if_tsoffset"])
def test_an_interface_option_longer_than_its_block_is_ignored(tmp_path: Path, code: int) -> None:
    # The option claims 8 bytes; the block ends right after its header (found by hypothesis).
    order = "<"
    shb = _ng_block(order, 0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1))
    idb = _ng_block(order, 1, struct.pack(order + "HHI", 101, 0, 0) + struct.pack("<HH", code, 8))
    frame = bytes(UDP_PKT)
    epb = _ng_block(
        order, 6, struct.pack(order + "IIIII", 0, 0, 10**6, len(frame), len(frame)) + frame
    )
    path = tmp_path / "short-option.pcapng"
    path.write_bytes(shb + idb + epb)
    (meta,) = _metas(path)
    assert meta.ts == pytest.approx(1.0)  # the default microsecond resolution stands


def test_pcapng_written_by_scapy(tmp_path: Path) -> None:
    path = tmp_path / "s.pcapng"
    p = _eth() / TCP_PKT
    p.time = 1_700_000_000.25
    wrpcapng(str(path), [p])
    (meta,) = _metas(path)
    assert meta.ts == pytest.approx(1_700_000_000.25)
    assert meta.dst.port == 443


# ---------------------------------------------------------------- bad files


def _one_line_error(path: Path) -> str:
    with pytest.raises(PcapError) as info:
        list(read_packets(path))
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


def test_missing_directory_empty_and_garbage(tmp_path: Path) -> None:
    assert "no such file" in _one_line_error(tmp_path / "nope.pcap")
    assert "directory" in _one_line_error(tmp_path)
    (tmp_path / "empty").write_bytes(b"")
    assert "empty" in _one_line_error(tmp_path / "empty")
    (tmp_path / "text").write_text("hello, this is not a capture\n")
    assert "not a pcap" in _one_line_error(tmp_path / "text")


def test_truncated_and_oversized_records(tmp_path: Path) -> None:
    data = _write(tmp_path, [_eth() / UDP_PKT, _eth() / UDP_PKT]).read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[:-5])
    assert "cut short inside packet record 2" in _one_line_error(cut)
    cut.write_bytes(data[:30])
    assert "cut short inside packet record 1" in _one_line_error(cut)
    cut.write_bytes(data[:20])
    assert "truncated pcap header" in _one_line_error(cut)
    huge = tmp_path / "huge.pcap"
    huge.write_bytes(data[:24] + struct.pack("<IIII", 0, 0, 0x7FFFFFFF, 60) + b"x" * 60)
    assert "corrupt record" in _one_line_error(huge)


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_a_file_cut_inside_its_first_record_yields_what_is_there(tmp_path: Path, fmt: str) -> None:
    # The first record's header is whole and its frame stops 4 bytes short: the IP and UDP
    # headers are there, so the packet is read like one cut by the snap length.
    path = tmp_path / f"c.{fmt}"
    frame = _eth() / UDP_PKT
    frame.time = 1_700_000_000
    (wrpcap if fmt == "pcap" else wrpcapng)(str(path), [frame])
    data = path.read_bytes()
    end = len(data) - (4 if fmt == "pcap" else 12)  # pcapng: also cut the block's trailer
    path.write_bytes(data[:end])
    with CaptureFile(path) as capture:
        (meta,) = list(capture)
    assert capture.cut_short is not None and "packet record 1" in str(capture.cut_short)
    assert str(meta.dst) == "198.51.100.7:1194" and meta.payload == b"\x38ab"[: len(meta.payload)]
    assert capture.frames == 1


def test_unsupported_link_type(tmp_path: Path) -> None:
    path = _write(tmp_path, [UDP_PKT], linktype=147)  # DLT_USER0
    assert "link type 147 (USER0) is not supported" in _one_line_error(path)
    unnamed = _write(tmp_path, [UDP_PKT], linktype=300)
    assert "link type 300 is not supported (supported: 802.11, " in _one_line_error(unnamed)


def test_pcapng_bad_byte_order_and_undefined_interface(tmp_path: Path) -> None:
    good = _pcapng("<", bytes(UDP_PKT), 6, 1)
    bad = tmp_path / "bad.pcapng"
    bad.write_bytes(good[:8] + b"\x00\x00\x00\x00" + good[12:])
    assert "byte-order" in _one_line_error(bad)
    shb_len = struct.unpack("<I", good[4:8])[0]
    idb_len = struct.unpack("<I", good[shb_len + 4 : shb_len + 8])[0]
    bad.write_bytes(good[:shb_len] + good[shb_len + idb_len :])
    assert "undefined interface" in _one_line_error(bad)


# ---------------------------------------------------------------- fuzzing

_VALID = bytes(
    struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    + struct.pack("<IIII", 1, 0, 42, 42)
    + bytes(_eth() / UDP_PKT)
)
_VALID_NG = _pcapng("<", bytes(TCP_PKT), 6, 5)
_FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _read_quietly(path: Path) -> None:
    message = ""
    try:
        for meta in read_packets(path):
            assert meta.length >= 0
    except PcapError as exc:
        message = str(exc)
    assert "\n" not in message


@_FUZZ
@given(st.binary(max_size=400))
def test_fuzz_garbage_after_each_magic(
    tmp_path_factory: pytest.TempPathFactory, tail: bytes
) -> None:
    path = tmp_path_factory.mktemp("f") / "x"
    for head in (_VALID[:24], _VALID_NG[:28], _VALID[:4], b""):
        path.write_bytes(head + tail)
        _read_quietly(path)


@_FUZZ
@given(
    st.sampled_from([_VALID, _VALID_NG]),
    st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=8),
    st.integers(0, 260),
)
def test_fuzz_mutated_and_truncated_files(
    tmp_path_factory: pytest.TempPathFactory,
    base: bytes,
    flips: list[tuple[int, int]],
    cut: int,
) -> None:
    data = bytearray(base)
    for pos, value in flips:
        data[pos % len(data)] = value
    path = tmp_path_factory.mktemp("f") / "x"
    path.write_bytes(bytes(data[: len(data) - cut % len(data)]))
    _read_quietly(path)


@_FUZZ
@given(st.integers(0, 300), st.binary(max_size=200))
def test_fuzz_decoder_any_link_type(linktype: int, frame: bytes) -> None:
    meta = PacketDecoder().decode(linktype, frame, 0.0)
    if meta is not None:
        assert 0 <= meta.src.port <= 65535 and len(meta.payload) <= len(frame)


@_FUZZ
@given(st.sampled_from([0x0800, 0x86DD, 0x8100, 0x8864, 0x0806, 0]), st.binary(max_size=200))
def test_fuzz_decoder_cooked_frames(ethertype: int, frame: bytes) -> None:
    meta = PacketDecoder().decode_cooked(ethertype, frame, 0.0, "eth0")
    if meta is not None:
        assert meta.interface == "eth0" and meta.length >= 0


@_FUZZ
@given(st.binary(max_size=200), st.sampled_from([0x30, 0x32, 0x34, 0x37]))
def test_fuzz_gtp_u_payloads(tail: bytes, flags: int) -> None:
    outer = IP(src="192.0.2.50", dst="192.0.2.60") / UDP(sport=2152, dport=2152)
    meta = PacketDecoder().decode(101, bytes(outer / Raw(bytes([flags, 0xFF]) + tail)), 0.0)
    assert meta is not None and meta.length >= 0
