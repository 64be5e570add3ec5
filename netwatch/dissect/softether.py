"""SoftEther wire signatures (facts SE-DDNS-1, SE-AZURE-1, SE-NATT-C-1, VG-RELAY-3).

* NAT traversal on UDP 5004 carries a clear serialised PACK (`Pack.c`): a big-endian element
  count, then per element a name (length+1, bytes), a type, a value count and the values.
  Opcodes `nat_t_connect_request` (client; `target_hostname` says where it goes),
  `nat_t_register` and `get_token` (server) are deterministic. The NAT-T server answers
  `IP=a.b.c.d,PORT=n`.
* VPN Azure's control connection starts with the clear bytes `ACTL` on TCP 443.
* The DDNS client and update check send TLS with SNI exactly `DDNS` (see `dissector`).
* An SSL-VPN client puts the server string the user typed in the SNI, so a numeric one when an
  address was typed. Ordinary apps (video, conferencing, speakers) do that too, so the SNI alone
  is only a hint; what SoftEther adds is its upload right after the handshake: the body of
  `POST /vpnsvc/connect.cgi` is a 1,411-byte GIF watermark plus 0-1,999 random bytes
  (`Protocol.c` `ClientUploadSignature`, `WaterMark.c`, `HTTP.h` `HTTP_PACK_RAND_SIZE_MAX`,
  https://github.com/SoftEtherVPN/SoftEtherVPN/tree/master/src), sent as its own write, so
  one of the client's first encrypted records has that size.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from netwatch.dissect import labels
from netwatch.model import Label

NATT_PORT = 5004
SERVER_PORTS = frozenset({443, 992, 1194, 5555})
"""A stand-alone SoftEther server's default TCP listeners (`SERVER_DEF_PORTS_1..4`)."""
TLS_PORTS = frozenset({992, 5555})
"""SoftEther server default ports that other TLS services rarely use (443 and 1194 are shared)."""
UDP_ACCEL_LOW, UDP_ACCEL_HIGH = 40000, 44999
"""Server-side UDP acceleration ports (`UdpAccel.h`)."""
WATERMARK_SIZE = 1411
WATERMARK_PADDING = 1999
_RECORD_OVERHEAD = (16, 64)
"""Bytes a TLS record adds to its plaintext: 16 (ChaCha20-Poly1305) up to CBC with padding."""
WATERMARK_RECORDS = 4
"""How many of the client's first application-data records may carry the watermark (the
first TLS 1.3 one is the Finished message, the next the POST's header)."""
AZURE_MAGIC = b"ACTL"
DDNS_SNI = "DDNS"
_MAX_ELEMENTS = 64
_MAX_VALUES = 16
_INT, _DATA, _STR, _UNISTR, _INT64 = 0, 1, 2, 3, 4
_REPLY = re.compile(rb"IP=[0-9a-fA-F.:]{2,45},PORT=\d{1,5}\s*")
_OPCODES = frozenset({b"nat_t_connect_request", b"nat_t_register", b"get_token"})
_INTERESTING = ("opcode", "target_hostname", "dest_ip", "svc_name", "host_name", "ddns_fqdn")


@dataclass(frozen=True, slots=True)
class PackValue:
    """One element of a PACK: its name and first value, as text when it is a string."""

    name: str
    value: str


def parse_pack(data: bytes) -> tuple[PackValue, ...] | None:
    """Parse a serialised PACK; None unless the whole buffer is consumed by valid elements."""
    if len(data) < 4:
        return None
    count = int.from_bytes(data[:4], "big")
    if not 0 < count <= _MAX_ELEMENTS:
        return None
    off = 4
    out: list[PackValue] = []
    for _ in range(count):
        name_len = int.from_bytes(data[off : off + 4], "big") if off + 4 <= len(data) else 0
        if not 1 < name_len <= 64 or off + 4 + name_len - 1 + 8 > len(data):
            return None
        name = data[off + 4 : off + 3 + name_len]
        off += 3 + name_len
        vtype = int.from_bytes(data[off : off + 4], "big")
        nvals = int.from_bytes(data[off + 4 : off + 8], "big")
        off += 8
        if vtype > _INT64 or not 0 < nvals <= _MAX_VALUES:
            return None
        first = ""
        for i in range(nvals):
            got = _value(data, off, vtype)
            if got is None:
                return None
            text, off = got
            if i == 0:
                first = text
        out.append(PackValue(name.decode("ascii", "replace"), first))
    return tuple(out) if off == len(data) else None


def _value(data: bytes, off: int, vtype: int) -> tuple[str, int] | None:
    """Read one value of a PACK element; return (printable text, offset after)."""
    if vtype == _INT:
        return (
            (str(int.from_bytes(data[off : off + 4], "big")), off + 4)
            if off + 4 <= len(data)
            else None
        )
    if vtype == _INT64:
        return (
            (str(int.from_bytes(data[off : off + 8], "big")), off + 8)
            if off + 8 <= len(data)
            else None
        )
    if off + 4 > len(data):
        return None
    size = int.from_bytes(data[off : off + 4], "big")
    raw = data[off + 4 : off + 4 + size]
    if len(raw) != size:
        return None
    if vtype == _DATA:
        return "", off + 4 + size
    return raw.rstrip(b"\x00").decode("utf-8", "replace"), off + 4 + size


def natt_label(payload: bytes) -> Label | None:
    """Label a SoftEther NAT-T datagram (request PACK or `IP=...,PORT=...` reply)."""
    if payload[:3] == b"IP=" and 9 < len(payload) < 64 and _REPLY.fullmatch(payload):
        return labels.vpn("softether", labels.HIGH, ("natt_reply", payload.decode("ascii").strip()))
    elements = parse_pack(payload)
    if elements is None:
        return None
    found = {e.name: e.value for e in elements if e.name in _INTERESTING}
    opcode = found.get("opcode", "")
    if opcode.encode() not in _OPCODES and "host_name" not in found and "svc_name" not in found:
        return None
    evidence = [(f"pack_{name}", value[:128]) for name, value in found.items() if value]
    return labels.vpn("softether", labels.HIGH, *evidence)


def azure_label(payload: bytes) -> Label | None:
    """Label VPN Azure's clear control connection (first client bytes `ACTL`)."""
    if payload[:4] != AZURE_MAGIC:
        return None
    return labels.vpn("softether", labels.HIGH, ("azure_control", "ACTL"))


def watermark_sized(record_length: int) -> bool:
    """True when an encrypted record is as long as the SSL-VPN watermark upload can be."""
    low = WATERMARK_SIZE + _RECORD_OVERHEAD[0]
    high = WATERMARK_SIZE + WATERMARK_PADDING + _RECORD_OVERHEAD[1]
    return low <= record_length <= high
