"""Link-layer frames to `PacketMeta`: the header parser shared by pcap files and live capture.

Headers are read with plain indexing and `int.from_bytes` rather than scapy's dissection:
`bench/capture.py` measures scapy's `Ether(frame)` at tens of microseconds a packet against
about one for this parser, and `analyze` must move 100,000 packets a second. scapy stays the
tool for building packets in tests; nothing here needs a layer this parser does not know.

Handled link types (libpcap LINKTYPE_ numbers, https://www.tcpdump.org/linktypes.html):
Ethernet (1) with 802.1Q / 802.1ad / QinQ tags and PPPoE sessions, Linux cooked SLL (113) and
SLL2 (276), raw IP (12, 14, 101, 228, 229), BSD loopback NULL (0) and LOOP (108), PPP (9), PPP
in HDLC framing (50), PPPoE without Ethernet (51), Cisco HDLC (104), 802.11 data frames with
LLC/SNAP (105), alone or behind radiotap (127) or PPI (192; PPI around Ethernet too). Anything
else, and every malformed header, gives `None`: garbage never raises.

GTP-U (3GPP TS 29.281: UDP port 2152, a GTPv1 header, type 255 = G-PDU) is decapsulated: the
user's own packet inside is what the flow table sees, as a mobile core's capture is about the
subscribers' traffic, not the one tunnel between two gateways.

Linux cooked headers (SLL, SLL2) and live capture also say which copy of a packet a frame is
(`PacketMeta.pkttype`: arriving, leaving, passing by) and on which interface (SLL2 and live
capture: `PacketMeta.ifindex`), so the flow table can count a routed packet once
(`flows.table`, "Counting every packet once"). The loopback's leaving copy in such a file is
left out (`None`), as live capture leaves it out: loopback shows every packet twice.

The common packet (IPv4 without options or fragmentation, carrying TCP with a whole header or
UDP that is not GTP-U) takes one path (`PacketDecoder._ipv4_plain`): one `struct` read of the
IP and transport headers and endpoints cached by one integer, where the general path makes
eight calls and hashes a tuple of bytes per endpoint. `bench/capture.py` times both; the
general path decides everything else, and a property test holds the two equal.

IPv4 fragments are not reassembled: every fragment counts its bytes, and non-first fragments
borrow the ports of their first fragment (remembered by IP id in a small bounded map) so the
bytes land on the right flow. Only the first fragment's payload reaches the dissectors.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Callable

from netwatch.model import Endpoint, IPAddress, PacketMeta, Transport

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_PPP = 9
LINKTYPE_RAW = 101
LINKTYPE_PPP_HDLC = 50
LINKTYPE_PPP_ETHER = 51
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276
LINKTYPE_C_HDLC = 104
LINKTYPE_IEEE802_11 = 105
LINKTYPE_RADIOTAP = 127
LINKTYPE_PPI = 192
GTP_U_PORT = 2152

LINK_NAMES = {
    LINKTYPE_NULL: "BSD loopback",
    LINKTYPE_ETHERNET: "Ethernet",
    LINKTYPE_PPP: "PPP",
    12: "raw IP",
    14: "raw IP",
    LINKTYPE_RAW: "raw IP",
    LINKTYPE_PPP_HDLC: "PPP (HDLC)",
    LINKTYPE_PPP_ETHER: "PPPoE",
    LINKTYPE_LOOP: "OpenBSD loopback",
    LINKTYPE_LINUX_SLL: "Linux cooked (SLL)",
    LINKTYPE_IPV4: "raw IPv4",
    LINKTYPE_IPV6: "raw IPv6",
    LINKTYPE_LINUX_SLL2: "Linux cooked (SLL2)",
    LINKTYPE_C_HDLC: "Cisco HDLC",
    LINKTYPE_IEEE802_11: "802.11",
    LINKTYPE_RADIOTAP: "802.11 radiotap",
    LINKTYPE_PPI: "PPI",
}
"""The link types `PacketDecoder` understands, with a name for messages."""

OTHER_LINK_NAMES = {
    6: "Token Ring",
    10: "FDDI",
    119: "802.11 Prism",
    143: "DOCSIS",
    163: "802.11 AVS",
    189: "Linux USB",
    195: "802.15.4",
    201: "Bluetooth HCI H4",
    220: "Linux USB (mmapped)",
    249: "USBPcap",
    253: "Linux netlink",
    254: "Bluetooth Linux monitor",
    **{147 + n: f"USER{n}" for n in range(16)},
}
"""Common link types netwatch does not decode, so the error can say what the file holds."""

_VLAN_TYPES = frozenset((0x8100, 0x88A8, 0x9100, 0x9200))
_PPP_IPV4 = frozenset((0x0021, 0x21))
_PPP_IPV6 = frozenset((0x0057, 0x57))
# AF_INET6 differs per BSD: 24 (NetBSD/OpenBSD), 28 (FreeBSD), 30 (macOS); Linux says 10.
_AF_INET6 = frozenset((10, 24, 28, 30))
_PORTED = frozenset((6, 17, 132))
_TRANSPORTS = {n: Transport.from_ip_proto(n) for n in range(256)}
_IPV6_EXTENSIONS = frozenset((0, 43, 60))
_PLAIN_V4 = struct.Struct("!BxHxxHxBxxIIHHxxxxxxxxBB")
"""An option-less IPv4 header and the first 14 bytes of its transport header: version and
length, total length, flags and fragment offset, protocol, source, destination, the ports,
and TCP's data offset and flags (bytes 12-13; UDP's checksum and first payload bytes there)."""
_TCP = _TRANSPORTS[6]
_COOKED = frozenset((LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2))
_UDP = _TRANSPORTS[17]
_CACHE_LIMIT = 1 << 16
_FRAGMENT_LIMIT = 4096
_SNAP = b"\xaa\xaa\x03\x00\x00\x00"
_GTP_DEPTH = 2
"""GTP-U inside GTP-U is followed this deep and no deeper (a crafted packet could nest it)."""


def _ppp_l3(data: bytes, off: int) -> tuple[int, int]:
    """After an optional `ff 03` HDLC prefix, map the PPP protocol field to an IP version."""
    if data[off : off + 2] == b"\xff\x03":
        off += 2
    if len(data) <= off:
        return -1, 0
    if data[off] & 1:  # protocol-field compression: a one-byte protocol number
        proto, off = data[off], off + 1
    else:
        proto, off = int.from_bytes(data[off : off + 2], "big"), off + 2
    if proto in _PPP_IPV4:
        return off, 4
    if proto in _PPP_IPV6:
        return off, 6
    return -1, 0


def _ether_l3(data: bytes, etype: int, off: int) -> tuple[int, int]:
    """Follow VLAN tags and PPPoE sessions from an ethertype to the IP header."""
    n = len(data)
    while etype in _VLAN_TYPES and off + 4 <= n:
        etype = (data[off + 2] << 8) | data[off + 3]
        off += 4
    if etype == 0x0800:
        return off, 4
    if etype == 0x86DD:
        return off, 6
    if etype == 0x8864 and off + 8 <= n:  # PPPoE session: 6-byte header, then PPP
        return _ppp_l3(data, off + 6)
    return -1, 0


def _l3_ethernet(data: bytes) -> tuple[int, int]:
    if len(data) < 14:
        return -1, 0
    return _ether_l3(data, (data[12] << 8) | data[13], 14)


def _l3_sll(data: bytes) -> tuple[int, int]:
    if len(data) < 16:
        return -1, 0
    return _ether_l3(data, (data[14] << 8) | data[15], 16)


def _l3_sll2(data: bytes) -> tuple[int, int]:
    if len(data) < 20:
        return -1, 0
    return _ether_l3(data, (data[0] << 8) | data[1], 20)


def _l3_raw(data: bytes) -> tuple[int, int]:
    if not data:
        return -1, 0
    version = data[0] >> 4
    return (0, version) if version in (4, 6) else (-1, 0)


def _l3_null(data: bytes) -> tuple[int, int]:
    if len(data) < 4:
        return -1, 0
    # The family is in the capturing host's byte order, which the file does not record.
    family = int.from_bytes(data[:4], "little")
    if family > 0xFFFF:
        family = int.from_bytes(data[:4], "big")
    return _family_l3(family)


def _l3_loop(data: bytes) -> tuple[int, int]:
    if len(data) < 4:
        return -1, 0
    return _family_l3(int.from_bytes(data[:4], "big"))


def _family_l3(family: int) -> tuple[int, int]:
    if family == 2:
        return 4, 4
    if family in _AF_INET6:
        return 4, 6
    return -1, 0


def _l3_ppp(data: bytes) -> tuple[int, int]:
    return _ppp_l3(data, 0)


def _l3_ppp_ether(data: bytes) -> tuple[int, int]:
    return _ppp_l3(data, 6) if len(data) >= 8 else (-1, 0)


def _l3_c_hdlc(data: bytes) -> tuple[int, int]:
    """Cisco HDLC: address, control, then an ethertype (0x0800, 0x86DD)."""
    if len(data) < 4:
        return -1, 0
    return _ether_l3(data, (data[2] << 8) | data[3], 4)


def _l3_80211(data: bytes, off: int = 0) -> tuple[int, int]:
    """An 802.11 data frame (IEEE 802.11-2020 §9.3.2.1) whose body starts with LLC/SNAP.

    Management, control, null-data and protected (encrypted) frames carry no readable IP.
    """
    if len(data) < off + 24:
        return -1, 0
    fc0, fc1 = data[off], data[off + 1]
    if (fc0 >> 2) & 3 != 2 or fc0 & 0x40 or fc1 & 0x40:  # not data, no body, or protected
        return -1, 0
    header = 24 + (6 if fc1 & 3 == 3 else 0)  # four addresses when both DS bits are set
    if fc0 & 0x80:  # QoS data: a QoS control field, and an HT control field with +HTC
        header += 2 + (4 if fc1 & 0x80 else 0)
    body = off + header
    if data[body : body + 6] != _SNAP or len(data) < body + 8:
        return -1, 0
    return _ether_l3(data, (data[body + 6] << 8) | data[body + 7], body + 8)


def _l3_radiotap(data: bytes) -> tuple[int, int]:
    """Radiotap (https://www.radiotap.org): version 0, pad, little-endian length, then 802.11."""
    if len(data) < 4 or data[0] != 0:
        return -1, 0
    return _l3_80211(data, int.from_bytes(data[2:4], "little"))


def _l3_ppi(data: bytes) -> tuple[int, int]:
    """PPI (Per-Packet Information, CACE 2007): version 0, flags, length and DLT, little-endian.

    The frame after the header is decoded by its own link type: 802.11 (105) mostly, or
    Ethernet (1). A PPI inside PPI is refused, so a crafted header cannot recurse.
    """
    if len(data) < 8 or data[0] != 0:
        return -1, 0
    length = int.from_bytes(data[2:4], "little")
    dlt = int.from_bytes(data[4:8], "little")
    if length < 8 or dlt == LINKTYPE_PPI:
        return -1, 0
    if dlt == LINKTYPE_IEEE802_11:
        return _l3_80211(data, length)
    inner = _LINK_DECODERS.get(dlt)
    if inner is None:
        return -1, 0
    off, version = inner(data[length:])
    return (off + length, version) if off >= 0 else (-1, 0)


_LINK_DECODERS: dict[int, Callable[[bytes], tuple[int, int]]] = {
    LINKTYPE_NULL: _l3_null,
    LINKTYPE_ETHERNET: _l3_ethernet,
    LINKTYPE_PPP: _l3_ppp,
    12: _l3_raw,
    14: _l3_raw,
    LINKTYPE_RAW: _l3_raw,
    LINKTYPE_PPP_HDLC: _l3_ppp,
    LINKTYPE_PPP_ETHER: _l3_ppp_ether,
    LINKTYPE_LOOP: _l3_loop,
    LINKTYPE_LINUX_SLL: _l3_sll,
    LINKTYPE_IPV4: _l3_raw,
    LINKTYPE_IPV6: _l3_raw,
    LINKTYPE_LINUX_SLL2: _l3_sll2,
    LINKTYPE_C_HDLC: _l3_c_hdlc,
    LINKTYPE_IEEE802_11: _l3_80211,
    LINKTYPE_RADIOTAP: _l3_radiotap,
    LINKTYPE_PPI: _l3_ppi,
}


_ARPHRD_LOOPBACK = 772
_PACKET_OUTGOING = 4
_LOOPBACK_LEAVING = -1
"""`_direction`'s answer for the loopback's leaving copy."""


def _direction(linktype: int, data: bytes) -> tuple[int | None, int]:
    """(packet type, interface index) from the Linux cooked headers that carry them.

    SLL (113) starts with the packet type (2 bytes, big-endian) and the link's ARPHRD type,
    and has no interface; SLL2 (276) has the interface index at bytes 4-7, the ARPHRD type
    at 8-9 and the packet type at byte 10
    (https://www.tcpdump.org/linktypes/LINKTYPE_LINUX_SLL.html, LINKTYPE_LINUX_SLL2.html).
    Loopback shows each packet leaving and then arriving: the leaving copy is
    `_LOOPBACK_LEAVING`, left out as live capture leaves it out (`sources.capture`). Other
    link types do not say which copy a frame is: (None, 0). The caller checked the length.
    """
    if linktype == LINKTYPE_LINUX_SLL:
        pkttype, hatype, ifindex = (data[0] << 8) | data[1], (data[2] << 8) | data[3], 0
    elif linktype == LINKTYPE_LINUX_SLL2:
        pkttype, hatype = data[10], (data[8] << 8) | data[9]
        ifindex = int.from_bytes(data[4:8], "big")
    else:
        return None, 0
    if pkttype == _PACKET_OUTGOING and hatype == _ARPHRD_LOOPBACK:
        return _LOOPBACK_LEAVING, ifindex
    return pkttype, ifindex


def supported_link_type(linktype: int) -> bool:
    """Say whether frames of this link type can be decoded."""
    return linktype in _LINK_DECODERS


class PacketDecoder:
    """Decodes frames into `PacketMeta`, caching endpoint objects between packets.

    Caches (addresses, endpoints, fragment ports) are bounded and simply cleared when full:
    they only save allocations, so losing them costs time, never correctness.
    """

    def __init__(self) -> None:
        self._ips: dict[bytes, IPAddress] = {}
        self._endpoints: dict[tuple[bytes, int], Endpoint] = {}
        self._v4_endpoints: dict[int, Endpoint] = {}
        self._fragments: dict[tuple[bytes, bytes, int, bytes], tuple[int, int]] = {}
        self._gtp_depth = 0
        self._pkttype: int | None = None
        self._ifindex = 0
        """Which copy the frame being decoded is (`PacketMeta.pkttype`), and where it was
        seen: set per frame by `decode` / `decode_cooked`, read by `_meta`."""

    def decode(
        self, linktype: int, data: bytes, ts: float, interface: str | None = None
    ) -> PacketMeta | None:
        """Decode one frame; `None` for non-IP frames and anything malformed."""
        link = _LINK_DECODERS.get(linktype)
        if link is None:
            return None
        off, version = link(data)
        if off < 0:
            return None
        if linktype in _COOKED:
            self._pkttype, self._ifindex = _direction(linktype, data)
            if self._pkttype == _LOOPBACK_LEAVING:
                return None
        else:
            self._pkttype, self._ifindex = None, 0
        if version == 4:
            return self._ipv4(data, off, ts, interface)
        return self._ipv6(data, off, ts, interface)

    def decode_cooked(
        self,
        ethertype: int,
        data: bytes,
        ts: float,
        interface: str | None = None,
        pkttype: int | None = None,
        ifindex: int = 0,
    ) -> PacketMeta | None:
        """Decode a frame whose link header was removed (an AF_PACKET SOCK_DGRAM read);
        `pkttype` and `ifindex` are the packet socket's `sll_pkttype` and `sll_ifindex`."""
        off, version = _ether_l3(data, ethertype, 0)
        if off < 0:
            return None
        self._pkttype, self._ifindex = pkttype, ifindex
        if version == 4:
            return self._ipv4(data, off, ts, interface)
        return self._ipv6(data, off, ts, interface)

    def _endpoint(self, addr: bytes, port: int) -> Endpoint:
        key = (addr, port)
        ep = self._endpoints.get(key)
        if ep is None:
            ip = self._ips.get(addr)
            if ip is None:
                if len(self._ips) >= _CACHE_LIMIT:
                    self._ips.clear()
                ip = ipaddress.ip_address(addr)
                self._ips[addr] = ip
            if len(self._endpoints) >= _CACHE_LIMIT:
                self._endpoints.clear()
            ep = self._endpoints[key] = Endpoint(ip, port)
        return ep

    def _ipv4(self, data: bytes, off: int, ts: float, ifname: str | None) -> PacketMeta | None:
        if len(data) - off >= 34:
            meta = self._ipv4_plain(data, off, ts, ifname)
            if meta is not None:
                return meta
        return self._ipv4_general(data, off, ts, ifname)

    def _ipv4_plain(
        self, data: bytes, off: int, ts: float, ifname: str | None
    ) -> PacketMeta | None:
        """The common IPv4 packet in one read, or None to leave it to `_ipv4_general`.

        Taken only where the general path would read the same fields the same way: version 4
        with a 20-byte header, not a fragment, a total length that is at least the header and
        TCP with its whole header (data offset 20 or more, inside the packet) or UDP off the
        GTP-U port with a length field that is 8 or more. The caller checked 34 bytes remain.
        """
        vihl, total, frag, proto, src, dst, sport, dport, b12, b13 = _PLAIN_V4.unpack_from(
            data, off
        )
        if vihl != 0x45 or frag & 0x3FFF or total < 20:
            return None
        n = len(data)
        end = off + total
        if end > n:
            end = n
        l4 = off + 20
        if proto == 6:
            doff = (b12 >> 4) * 4
            if doff < 20 or l4 + doff > end:
                return None
            payload = data[l4 + doff : end]
            transport, flags = _TCP, b13
        elif proto == 17:
            if sport == GTP_U_PORT or dport == GTP_U_PORT or l4 + 8 > end:
                return None
            ulen = (data[l4 + 4] << 8) | data[l4 + 5]
            stop = l4 + ulen if ulen >= 8 and l4 + ulen < end else end
            payload = data[l4 + 8 : stop]
            transport, flags = _UDP, 0
        else:
            return None
        endpoints = self._v4_endpoints
        key = (src << 16) | sport
        a = endpoints.get(key)
        if a is None:
            a = self._v4_endpoint(key)
        key = (dst << 16) | dport
        b = endpoints.get(key)
        if b is None:
            b = self._v4_endpoint(key)
        return PacketMeta(
            ts, transport, a, b, total, payload, flags, proto, ifname, self._pkttype, self._ifindex
        )

    def _v4_endpoint(self, key: int) -> Endpoint:
        """The endpoint of an (IPv4 address << 16 | port) key, made once and cached."""
        endpoints = self._v4_endpoints
        if len(endpoints) >= _CACHE_LIMIT:
            endpoints.clear()
        ep = endpoints[key] = self._endpoint((key >> 16).to_bytes(4, "big"), key & 0xFFFF)
        return ep

    def _ipv4_general(
        self, data: bytes, off: int, ts: float, ifname: str | None
    ) -> PacketMeta | None:
        """Any IPv4 packet: options, fragments, other protocols, short or odd headers."""
        n = len(data)
        if off + 20 > n or data[off] >> 4 != 4:
            return None
        ihl = (data[off] & 15) * 4
        if ihl < 20 or off + ihl > n:
            return None
        total = (data[off + 2] << 8) | data[off + 3]
        if total < ihl:  # 0 on TSO packets captured before segmentation
            total = n - off
        end = min(off + total, n)
        frag = ((data[off + 6] & 0x1F) << 8) | data[off + 7]
        more = data[off + 6] & 0x20
        proto = data[off + 9]
        src, dst = data[off + 12 : off + 16], data[off + 16 : off + 20]
        l4 = off + ihl
        if frag:
            ports = self._fragments.get((src, dst, proto, data[off + 4 : off + 6]), (0, 0))
            return self._meta(ts, proto, src, ports[0], dst, ports[1], total, b"", 0, ifname)
        if more and proto in _PORTED and l4 + 4 <= n:
            if len(self._fragments) >= _FRAGMENT_LIMIT:
                self._fragments.clear()
            ports = (
                (data[l4] << 8) | data[l4 + 1],
                (data[l4 + 2] << 8) | data[l4 + 3],
            )
            self._fragments[(src, dst, proto, data[off + 4 : off + 6])] = ports
        return self._transport(data, l4, end, ts, proto, src, dst, total, ifname)

    def _ipv6(self, data: bytes, off: int, ts: float, ifname: str | None) -> PacketMeta | None:
        n = len(data)
        if off + 40 > n or data[off] >> 4 != 6:
            return None
        plen = (data[off + 4] << 8) | data[off + 5]
        total = 40 + plen if plen else n - off  # 0 means a jumbogram (hop-by-hop length)
        end = min(off + total, n)
        nh = data[off + 6]
        src, dst = data[off + 8 : off + 24], data[off + 24 : off + 40]
        p = off + 40
        for _ in range(8):
            if nh in _IPV6_EXTENSIONS and p + 8 <= end:
                nh, p = data[p], p + (data[p + 1] + 1) * 8
            elif nh == 44 and p + 8 <= end:  # fragment header
                frag = ((data[p + 2] << 8) | data[p + 3]) >> 3
                nh, p = data[p], p + 8
                if frag:
                    return self._meta(ts, nh, src, 0, dst, 0, total, b"", 0, ifname)
            else:
                break
        if p > end:
            return None
        return self._transport(data, p, end, ts, nh, src, dst, total, ifname)

    def _transport(
        self,
        data: bytes,
        l4: int,
        end: int,
        ts: float,
        proto: int,
        src: bytes,
        dst: bytes,
        total: int,
        ifname: str | None,
    ) -> PacketMeta:
        sport = dport = flags = 0
        payload = b""
        if proto in _PORTED:
            if l4 + 4 <= end:
                sport = (data[l4] << 8) | data[l4 + 1]
                dport = (data[l4 + 2] << 8) | data[l4 + 3]
            if proto == 6 and l4 + 14 <= end:
                flags = data[l4 + 13]
                doff = (data[l4 + 12] >> 4) * 4
                if doff >= 20 and l4 + doff <= end:
                    payload = data[l4 + doff : end]
            elif proto == 17 and l4 + 8 <= end:
                ulen = (data[l4 + 4] << 8) | data[l4 + 5]
                stop = min(end, l4 + ulen) if ulen >= 8 else end
                if GTP_U_PORT in (sport, dport):
                    inner = self._gtp_u(data, l4 + 8, stop, ts, ifname)
                    if inner is not None:
                        return inner
                payload = data[l4 + 8 : stop]
            elif proto == 132 and l4 + 12 <= end:
                payload = data[l4 + 12 : end]
        else:
            payload = data[l4:end]
        return self._meta(ts, proto, src, sport, dst, dport, total, payload, flags, ifname)

    def _gtp_u(
        self, data: bytes, off: int, end: int, ts: float, ifname: str | None
    ) -> PacketMeta | None:
        """The IP packet inside a GTP-U G-PDU (3GPP TS 29.281 §5), or None if it is not one.

        Header: flags (version 1, PT 1), type 255, length, TEID; with any of E/S/PN set, a
        sequence number, N-PDU number and next-extension type follow, then each extension
        header (length in 4-byte units, its last byte naming the next) until type 0.
        """
        if off + 8 > end or data[off] & 0xF0 != 0x30 or data[off + 1] != 0xFF:
            return None
        if self._gtp_depth >= _GTP_DEPTH:
            return None
        flags, p = data[off], off + 8
        if flags & 0x07:
            if p + 4 > end:
                return None
            next_type, p = data[p + 3], p + 4
            while next_type:
                if p >= end or data[p] == 0:
                    return None
                ext_end = p + data[p] * 4
                if ext_end > end:
                    return None
                next_type, p = data[ext_end - 1], ext_end
        if p >= end:
            return None
        version = data[p] >> 4
        self._gtp_depth += 1
        try:
            inner = data[p:end]
            if version == 4:
                return self._ipv4(inner, 0, ts, ifname)
            if version == 6:
                return self._ipv6(inner, 0, ts, ifname)
            return None
        finally:
            self._gtp_depth -= 1

    def _meta(
        self,
        ts: float,
        proto: int,
        src: bytes,
        sport: int,
        dst: bytes,
        dport: int,
        length: int,
        payload: bytes,
        flags: int,
        ifname: str | None,
    ) -> PacketMeta:
        return PacketMeta(
            ts,
            _TRANSPORTS[proto],
            self._endpoint(src, sport),
            self._endpoint(dst, dport),
            length,
            payload,
            flags,
            proto,
            ifname,
            self._pkttype,
            self._ifindex,
        )
