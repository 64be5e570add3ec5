"""OpenVPN control channel over UDP and TCP (facts OVPN-1/OVPN-2; OpenVPN's `ssl_pkt.h`).

Byte 0 is `opcode << 3 | key_id`, bytes 1-8 the sender's session id. On TCP every packet has
a 2-byte big-endian length in front. One packet that starts 0x38 proves little (random UDP does
that one time in 256), so a flow is only labelled once the structure repeats:

* the other side answers with a hard-reset of its own, and its ACK array carries our session
  id (visible without tls-crypt) -> high;
* the same direction goes on with control/ACK packets under the same session id -> high
  (this also covers one-way captures, e.g. behind asymmetric NAT);
* both sides open with matching resets but nothing echoes (tls-crypt hides the ACK) -> medium.

Works with tls-auth and tls-crypt because opcode and session id stay in clear in both.

tls-crypt-v2 (opcode 10, P_CONTROL_HARD_RESET_CLIENT_V3) wraps the client reset like
tls-crypt, then appends the client's wrapped key WKc, whose last two bytes are its own length
(`WKc = T || AES-256-CTR(Kc || metadata) || len`: at least a 32-byte tag, a 256-byte Kc and a
metadata type byte; at most 1024 bytes) -- https://github.com/OpenVPN/openvpn/blob/master/doc/tls-crypt-v2.txt.
OpenVPN 2.6 clients number that reset from `EARLY_NEG_START` (0x0f000000), so its first
packet id is 0x0f000001 (seen with 2.6.14), to announce early negotiation; over TCP the
server's reset answering it is numbered the same way --
https://github.com/OpenVPN/openvpn/blob/master/src/openvpn/ssl_pkt.h.
"""

from __future__ import annotations

from netwatch.dissect import labels
from netwatch.model import Label

OPCODE_NAMES = {
    1: "P_CONTROL_HARD_RESET_CLIENT_V1",
    2: "P_CONTROL_HARD_RESET_SERVER_V1",
    3: "P_CONTROL_SOFT_RESET_V1",
    4: "P_CONTROL_V1",
    5: "P_ACK_V1",
    6: "P_DATA_V1",
    7: "P_CONTROL_HARD_RESET_CLIENT_V2",
    8: "P_CONTROL_HARD_RESET_SERVER_V2",
    9: "P_DATA_V2",
    10: "P_CONTROL_HARD_RESET_CLIENT_V3",
    11: "P_CONTROL_WKC_V1",
}
CLIENT_RESETS = frozenset({1, 7, 10})
SERVER_RESETS = frozenset({2, 8})
_FOLLOW_UPS = frozenset({3, 4, 5, 11})
_MIN_RESET = 14
"""opcode + session id + empty ACK array + packet id."""
_MAX_RESET = 1200


def frame(payload: bytes, tcp: bool) -> bytes | None:
    """Return the OpenVPN packet at the start of a UDP datagram or TCP segment."""
    if not tcp:
        return payload
    if len(payload) < 3:
        return None
    length = (payload[0] << 8) | payload[1]
    if length < _MIN_RESET or length + 2 > len(payload):
        return None
    return payload[2 : 2 + length]


_HMAC_SIZES = (16, 20, 32, 48, 64)
_EPOCH_MIN, _EPOCH_MAX = 1_000_000_000, 4_200_000_000
EARLY_NEG_START = 0x0F000000
_EARLY_NEG_RESENDS = 8
"""A few retransmissions of the reset (packet ids 0x0f000001..0x0f000008) still count."""
_TLS_CRYPT_TAG = 32
_WKC_MIN, _WKC_MAX = 32 + 256 + 1 + 2, 1024
"""tls-crypt-v2's wrapped client key: tag, Kc, metadata type byte, length; and its cap."""


def reset_layout(packet: bytes) -> str | None:
    """Say how a hard reset is wrapped, or None when its fields do not add up.

    Without tls-auth the ACK array follows the session id (empty in a client reset, then a
    message packet id of 0). With tls-crypt the replay packet id (1 in the first reset) and
    a Unix time follow the session id; with tls-auth they follow an HMAC of 16-64 bytes.
    tls-crypt-v2 client resets are checked by `_tls_crypt_v2_layout`.
    """
    if packet[0] >> 3 == 10:
        return _tls_crypt_v2_layout(packet)
    acks = packet[9]
    if acks <= 8:
        end = 10 + 4 * acks + (8 if acks else 0)
        if packet[end : end + 4] == b"\x00\x00\x00\x00" and len(packet) >= end + 4:
            return "plain"
    for hmac_len in (0, *_HMAC_SIZES):
        off = 9 + hmac_len
        packet_id = int.from_bytes(packet[off : off + 4], "big")
        first = packet_id == 1 or (hmac_len == 0 and _early_negotiation(packet_id))
        if first and _is_time(packet, off + 4):
            return "tls-crypt" if hmac_len == 0 else f"tls-auth hmac {hmac_len}"
    return None


def _tls_crypt_v2_layout(packet: bytes) -> str | None:
    """A tls-crypt-v2 client reset: packet id 1 (2.5) or 0x0f000001 (2.6), time, WKc at the end."""
    packet_id = int.from_bytes(packet[9:13], "big")
    if packet_id != 1 and not _early_negotiation(packet_id):
        return None
    wkc = int.from_bytes(packet[-2:], "big")
    if not _is_time(packet, 13) or not _WKC_MIN <= wkc <= _WKC_MAX:
        return None
    if 17 + _TLS_CRYPT_TAG + wkc > len(packet):
        return None
    return "tls-crypt-v2" if packet_id == 1 else "tls-crypt-v2, early negotiation"


def _early_negotiation(packet_id: int) -> bool:
    """True for the first few packet ids of a 2.6 tls-crypt-v2 exchange (0x0f000001...)."""
    return EARLY_NEG_START < packet_id <= EARLY_NEG_START + _EARLY_NEG_RESENDS


def _is_time(packet: bytes, off: int) -> bool:
    """True when the 4 bytes at `off` are a plausible Unix time (tls-auth/tls-crypt replay id)."""
    return len(packet) >= off + 4 and (
        _EPOCH_MIN <= int.from_bytes(packet[off : off + 4], "big") <= _EPOCH_MAX
    )


def reset_opcode(packet: bytes) -> int | None:
    """Return the opcode when `packet` is a plausible hard reset with key id 0."""
    if not _MIN_RESET <= len(packet) <= _MAX_RESET or packet[0] & 0x07:
        return None
    opcode = packet[0] >> 3
    if opcode not in CLIENT_RESETS and opcode not in SERVER_RESETS:
        return None
    return opcode if reset_layout(packet) is not None else None


class OpenVpnTracker:
    """Per-flow OpenVPN evidence, fed the first packets of each direction."""

    __slots__ = ("_opcode", "_sid", "_tcp", "dead")

    def __init__(self, tcp: bool) -> None:
        self._tcp = tcp
        self._sid: list[bytes | None] = [None, None]
        self._opcode: list[int] = [0, 0]
        self.dead = False

    def feed(self, from_initiator: bool, index: int, payload: bytes) -> Label | None:
        """Take one payload; return a label once the evidence is strong enough."""
        packet = frame(payload, self._tcp)
        side = 0 if from_initiator else 1
        if packet is None or len(packet) < 9:
            self.dead = self._sid[side] is None
            return None
        sid = self._sid[side]
        if sid is None:
            if index != 0:
                self.dead = True
                return None
            opcode = reset_opcode(packet)
            if opcode is None:
                self.dead = True
                return None
            self._sid[side] = packet[1:9]
            self._opcode[side] = opcode
            return self._pair(side, packet)
        return self._follow_up(side, packet, sid)

    def _pair(self, side: int, packet: bytes) -> Label | None:
        """Both directions opened with resets: check the echo of the other side's id."""
        other = self._sid[1 - side]
        if other is None:
            return self._tcp_single(side)
        mine, theirs = self._opcode[side], self._opcode[1 - side]
        if not (mine in SERVER_RESETS and theirs in CLIENT_RESETS) and not (
            mine in CLIENT_RESETS and theirs in SERVER_RESETS
        ):
            self.dead = True
            return None
        ev = (
            ("opcode", OPCODE_NAMES[theirs]),
            ("reply_opcode", OPCODE_NAMES[mine]),
            ("wrapping", reset_layout(packet) or "unknown"),
        )
        if other in packet[9:]:
            return labels.vpn("openvpn", labels.HIGH, *ev, ("ack_session_id", other.hex()))
        return labels.vpn("openvpn", labels.MEDIUM, *ev, ("session_id", packet[1:9].hex()))

    def _tcp_single(self, side: int) -> Label | None:
        """On TCP the length prefix plus a reset opcode is already a good sign (OVPN-2)."""
        if not self._tcp:
            return None
        return labels.vpn(
            "openvpn",
            labels.MEDIUM,
            ("opcode", OPCODE_NAMES[self._opcode[side]]),
            ("tcp_length_prefix", "matches"),
        )

    def _follow_up(self, side: int, packet: bytes, sid: bytes) -> Label | None:
        """Later packets of a direction must keep the session id of its reset."""
        opcode = packet[0] >> 3
        if packet[1:9] != sid or packet[0] & 0x07 or opcode not in _FOLLOW_UPS:
            return None
        if opcode == 11 and self._opcode[side] != 10:
            return None  # CONTROL_WKC only follows a tls-crypt-v2 client reset
        return labels.vpn(
            "openvpn",
            labels.HIGH,
            ("opcode", OPCODE_NAMES[self._opcode[side]]),
            ("next_opcode", OPCODE_NAMES[opcode]),
            ("session_id", sid.hex()),
        )
