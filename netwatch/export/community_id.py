"""Community ID v1 flow hashing (corelight/community-id-spec), for ECS `network.community_id`.

The hash is SHA-1 over seed (2 bytes), the two addresses and ports ordered so both directions
give the same id, the protocol number and one pad byte; base64, prefixed `1:`. ICMP type/code
pairs map to "ports" as the spec says so a request and its reply share an id. Written here
because it is ~50 lines and the PyPI `communityid` package is unmaintained since 2021.
"""

from __future__ import annotations

import base64
import hashlib
import struct

from netwatch.model import IPAddress, Transport

PROTO_NUMBERS: dict[Transport, int] = {
    Transport.ICMP: 1,
    Transport.TCP: 6,
    Transport.UDP: 17,
    Transport.GRE: 47,
    Transport.ESP: 50,
    Transport.AH: 51,
    Transport.ICMPV6: 58,
    Transport.SCTP: 132,
}
_PORTED = {1, 6, 17, 58, 132}

# Request/response ICMP types: each maps to its counterpart (spec section "ICMP").
_ICMP4 = {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 10: 9, 9: 10, 17: 18, 18: 17}
_ICMP6 = {128: 129, 129: 128, 133: 134, 134: 133, 135: 136, 136: 135, 130: 131, 131: 130,
          139: 140, 140: 139, 144: 145, 145: 144}  # fmt: skip


def _icmp_ports(proto: int, icmp_type: int, code: int) -> tuple[int, int, bool]:
    """Return (sport, dport, one_way) for an ICMP type and code."""
    table = _ICMP4 if proto == 1 else _ICMP6
    if icmp_type in table:
        return icmp_type, table[icmp_type], False
    return icmp_type, code, True


def community_id_v1(
    saddr: IPAddress,
    daddr: IPAddress,
    proto: int,
    sport: int | None = None,
    dport: int | None = None,
    seed: int = 0,
) -> str:
    """The `1:<base64>` Community ID of a flow; ports are ICMP type/code for ICMP."""
    if saddr.version != daddr.version:
        raise ValueError("addresses of different IP versions")
    one_way = False
    has_ports = proto in _PORTED and sport is not None and dport is not None
    if proto in (1, 58) and sport is not None and dport is not None:
        sport, dport, one_way = _icmp_ports(proto, sport, dport)
    src, dst = saddr.packed, daddr.packed
    sp, dp = sport or 0, dport or 0
    if not one_way and (src, sp) > (dst, dp):
        src, dst, sp, dp = dst, src, dp, sp
    data = struct.pack("!H", seed) + src + dst + struct.pack("!BB", proto, 0)
    if has_ports:
        data += struct.pack("!HH", sp, dp)
    digest = hashlib.sha1(data).digest()  # noqa: S324  # the spec defines SHA-1; not security
    return "1:" + base64.b64encode(digest).decode("ascii")
