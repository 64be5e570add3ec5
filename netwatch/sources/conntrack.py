"""The host's translated connections, from conntrack: which original view each NAT'd one had.

A container behind masquerade talks to the world under the host's address: capture on the
host's outside interface sees `host:40001 -> peer:80`, while the container's socket is
`172.17.0.2:51234 -> peer:80`. The kernel's connection tracking holds both views (the
original tuple and the reply tuple); `/proc/net/nf_conntrack` prints them, one connection a
line (`src= dst= sport= dport=` twice). Only TCP and UDP connections whose two views differ
are kept; the join to sockets is `flows.attribution`'s.

Reading is bounded (`MAX_LINES`), root-only (the file is 0440 root), per network namespace
(the reader's), and malformed lines are skipped, never raised.
"""

from __future__ import annotations

import ipaddress
import re

from netwatch.model import ConnectionView, Endpoint, Transport

PATH = "/proc/net/nf_conntrack"
MAX_LINES = 65536
"""Lines read at most per call: the kernel's default table size on a small machine."""
_TRANSPORTS = {"tcp": Transport.TCP, "udp": Transport.UDP}
Translation = tuple[ConnectionView, ConnectionView]
"""(original view, translated view) of one connection."""


_LINE = re.compile(
    r"^\S+\s+\d+\s+(tcp|udp)\s+\d+\s+\d+\s+(?:[A-Z_]+\s+)?"
    r"src=(\S+) dst=(\S+) sport=(\d+) dport=(\d+) (?:\[\w+\] )?"
    r"src=(\S+) dst=(\S+) sport=(\d+) dport=(\d+)",
    re.MULTILINE | re.ASCII,
)
"""One TCP or UDP connection: its original tuple, then its reply tuple (an `[UNREPLIED]`
mark may sit between them). Matched in C over the whole table: most lines are connections
nobody translates, and those cost no Python work beyond a tuple comparison."""

Fields = tuple[str, str, str, str, str, str, str, str, str]


def parse_translations(
    text: str, limit: int = MAX_LINES, memo: dict[Fields, Translation | None] | None = None
) -> tuple[Translation, ...]:
    """(original view, translated view) of each translated TCP/UDP connection in `text`.

    A view is (transport, initiator's end, responder's end). The original is the tuple the
    initiator sent; the translated one is the reply tuple read backwards (what the other
    side of the translation sees). Connections nobody translated are left out. `memo` keeps
    parsed connections between calls (a connection stays in the table for minutes).
    """
    out: list[Translation] = []
    for n, fields in enumerate(_LINE.findall(text)):
        if n >= limit:
            break
        _, src, dst, sport, dport, rsrc, rdst, rsport, rdport = fields
        if src == rdst and dst == rsrc and sport == rdport and dport == rsport:
            continue  # not translated: the reply is the original turned round
        if memo is not None and fields in memo:
            found = memo[fields]
        else:
            found = _translation(fields)
            if memo is not None:
                memo[fields] = found
        if found is not None:
            out.append(found)
    return tuple(out)


def _translation(fields: Fields) -> Translation | None:
    proto, src, dst, sport, dport, rsrc, rdst, rsport, rdport = fields
    transport = _TRANSPORTS[proto]
    try:
        return (
            (transport, _endpoint(src, sport), _endpoint(dst, dport)),
            (transport, _endpoint(rdst, rdport), _endpoint(rsrc, rsport)),
        )
    except ValueError:
        return None


def _endpoint(ip: str, port: str) -> Endpoint:
    number = int(port)
    if number > 65535:
        raise ValueError(port)
    return Endpoint(ipaddress.ip_address(ip), number)


class Conntrack:
    """Reads the translations again and again, parsing each connection once."""

    def __init__(self, path: str = PATH) -> None:
        self.path = path
        self._memo: dict[Fields, Translation | None] = {}

    def translations(self) -> tuple[Translation, ...]:
        """`parse_translations` of the table now; empty when it cannot be read."""
        text = _read(self.path)
        if len(self._memo) > 2 * MAX_LINES:
            self._memo.clear()
        return parse_translations(text, memo=self._memo) if text else ()


def _read(path: str) -> str:
    try:
        with open(path, encoding="ascii", errors="replace") as fh:
            lines = []
            for _ in range(MAX_LINES):
                line = fh.readline()
                if not line:
                    break
                lines.append(line)
    except OSError:
        return ""
    return "".join(lines)
