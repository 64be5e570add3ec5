"""Older tunnels with clear headers: L2TP, PPTP control, GRE (PPTP data or generic), tinc.

Facts L2TP-1, PPTP-1, GRE-1 (docs/architecture.md): SoftEther's `src/Cedar/Proto_L2TP.h`
(https://github.com/SoftEtherVPN/SoftEtherVPN), Wireshark's `epan/dissectors/packet-pptp.c`
(https://github.com/wireshark/wireshark) and nDPI's `tinc.c` (https://github.com/ntop/nDPI). GRE
carrying PPP (0x880B) is PPTP's data channel and so a VPN; other GRE is generic tunnelling
(site-to-site links, EtherIP) and is labelled `gre`, category network, not VPN.
"""

from __future__ import annotations

import re

from netwatch.dissect import labels
from netwatch.model import Label

L2TP_PORT = 1701
PPTP_MAGIC = b"\x1a\x2b\x3c\x4d"
GRE_PPP = 0x880B
_PPTP_CONTROL_TYPES = {
    1: "Start-Control-Connection-Request",
    2: "Start-Control-Connection-Reply",
    7: "Outgoing-Call-Request",
    8: "Outgoing-Call-Reply",
}
_TINC_ID = re.compile(rb"0 [A-Za-z0-9_]{1,64} 17(\.\d{1,3})?\n")


def l2tp_label(payload: bytes) -> Label | None:
    """Label an L2TP header (RFC 2661 §3.1): control messages need T, L, S and a true length."""
    if len(payload) < 6:
        return None
    flags, version = payload[0], payload[1] & 0x0F
    if version not in (2, 3) or payload[1] & 0xF0:
        return None
    if flags & 0x80:
        if flags & 0xC8 != 0xC8 or flags & 0x34:
            return None
        length = (payload[2] << 8) | payload[3]
        if length != len(payload):
            return None
        return labels.vpn("l2tp", labels.HIGH, ("l2tp", f"v{version} control"))
    if version != 2 or flags & 0x34:
        return None
    return labels.vpn("l2tp", labels.MEDIUM, ("l2tp", "v2 data"))


def pptp_label(payload: bytes) -> Label | None:
    """Label a PPTP control message: length, message type 1, magic cookie 0x1A2B3C4D."""
    if len(payload) < 12 or payload[4:8] != PPTP_MAGIC or payload[2:4] != b"\x00\x01":
        return None
    length = (payload[0] << 8) | payload[1]
    if length < 12 or length > len(payload):
        return None
    kind = (payload[8] << 8) | payload[9]
    name = _PPTP_CONTROL_TYPES.get(kind, f"control type {kind}")
    return labels.vpn("pptp", labels.HIGH, ("magic_cookie", "0x1A2B3C4D"), ("message", name))


def gre_label(payload: bytes) -> Label | None:
    """Label a GRE packet by version and protocol type (RFC 2784, RFC 2637 §4.1)."""
    if len(payload) < 4:
        return None
    version = payload[1] & 0x07
    proto = (payload[2] << 8) | payload[3]
    if version > 1:
        return None
    if proto == GRE_PPP:
        confidence = labels.HIGH if version == 1 else labels.MEDIUM
        return labels.vpn("pptp", confidence, ("gre_protocol", "0x880B (PPP)"))
    return labels.plain("gre", "network", labels.MEDIUM, ("gre_protocol", f"0x{proto:04X}"))


def tinc_id(payload: bytes) -> bool:
    """True for a tinc ID line, `0 <name> 17[.<minor>]\\n` (meta protocol 17; more may follow)."""
    return payload[:2] == b"0 " and _TINC_ID.match(payload) is not None
