"""DNS messages: the query name and the A/AAAA answers (RFC 1035 §4, RFC 3596).

Bounded: names follow at most 16 compression pointers and stop at 255 characters, and at most
64 answers are read, so a hostile message costs a fixed amount of work. Answers are reported
against the *query* name, because that is the name the process looked up before it connected
to the address (CNAME chains in between do not matter to the user).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from netwatch.model import IPAddress

_MAX_POINTERS = 16
_MAX_NAME = 255
_MAX_ANSWERS = 64
_TYPE_A = 1
_TYPE_AAAA = 28


@dataclass(frozen=True, slots=True)
class DnsMessage:
    """What a DNS message says: response or query, the first question, the address answers."""

    is_response: bool
    query: str | None
    answers: tuple[tuple[str, IPAddress], ...]


def read_name(data: bytes, offset: int) -> tuple[str, int] | None:
    """Read a possibly compressed name at `offset`; return (name, offset after it) or None."""
    labels: list[str] = []
    total = 0
    end = -1
    jumps = 0
    n = len(data)
    while True:
        if offset >= n:
            return None
        length = data[offset]
        if length == 0:
            offset += 1
            break
        if length & 0xC0 == 0xC0:
            if offset + 1 >= n or jumps >= _MAX_POINTERS:
                return None
            if end < 0:
                end = offset + 2
            offset = ((length & 0x3F) << 8) | data[offset + 1]
            jumps += 1
            continue
        if length & 0xC0:
            return None  # 0x40/0x80 label types are obsolete (RFC 6891 §5)
        offset += 1
        label = data[offset : offset + length]
        if len(label) != length:
            return None
        total += length + 1
        if total > _MAX_NAME:
            return None
        labels.append(label.decode("ascii", "replace"))
        offset += length
    return ".".join(labels).lower(), (end if end >= 0 else offset)


def parse_dns(data: bytes) -> DnsMessage | None:
    """Parse a DNS message (UDP payload, or TCP payload without its length prefix)."""
    if len(data) < 12:
        return None
    flags = (data[2] << 8) | data[3]
    if flags & 0x7800 not in (0, 0x2800):  # opcode QUERY (0) or UPDATE (5)
        return None
    qdcount = (data[4] << 8) | data[5]
    ancount = (data[6] << 8) | data[7]
    if qdcount > 4 or ancount > 512:
        return None
    offset = 12
    query: str | None = None
    for _ in range(qdcount):
        got = read_name(data, offset)
        if got is None or got[1] + 4 > len(data):
            return None
        if query is None:
            query = got[0]
        offset = got[1] + 4
    is_response = bool(flags & 0x8000)
    answers: list[tuple[str, IPAddress]] = []
    if is_response and query is not None:
        for _ in range(min(ancount, _MAX_ANSWERS)):
            got = read_name(data, offset)
            if got is None or got[1] + 10 > len(data):
                break
            offset = got[1]
            rtype = (data[offset] << 8) | data[offset + 1]
            rdlen = (data[offset + 8] << 8) | data[offset + 9]
            offset += 10
            rdata = data[offset : offset + rdlen]
            if len(rdata) != rdlen:
                break
            offset += rdlen
            if rtype == _TYPE_A and rdlen == 4:
                answers.append((query, ipaddress.IPv4Address(rdata)))
            elif rtype == _TYPE_AAAA and rdlen == 16:
                answers.append((query, ipaddress.IPv6Address(rdata)))
    elif query is None:
        return None
    return DnsMessage(is_response, query, tuple(answers))
