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

from netwatch.model import ConnectionView, Endpoint, Transport

PATH = "/proc/net/nf_conntrack"
MAX_LINES = 65536
"""Lines read at most per call: the kernel's default table size on a small machine."""
_TRANSPORTS = {"tcp": Transport.TCP, "udp": Transport.UDP}


def parse_translations(
    text: str, limit: int = MAX_LINES
) -> tuple[tuple[ConnectionView, ConnectionView], ...]:
    """(original view, translated view) of each translated TCP/UDP connection in `text`.

    A view is (transport, initiator's end, responder's end). The original is the tuple the
    initiator sent; the translated one is the reply tuple read backwards (what the other
    side of the translation sees). Connections nobody translated are left out.
    """
    out: list[tuple[ConnectionView, ConnectionView]] = []
    for line in text.splitlines()[:limit]:
        parts = line.split()
        if len(parts) < 4:
            continue
        transport = _TRANSPORTS.get(parts[2])
        if transport is None:
            continue
        fields = [p.split("=", 1) for p in parts if p.count("=") == 1 and p[0] != "["]
        tup = [v for k, v in fields if k in ("src", "dst", "sport", "dport")]
        if len(tup) != 8:
            continue
        src, dst, sport, dport, rsrc, rdst, rsport, rdport = tup
        if (src, dst, sport, dport) == (rdst, rsrc, rdport, rsport):
            continue  # not translated: the reply is the original turned round
        try:
            original = (
                transport,
                Endpoint(ipaddress.ip_address(src), int(sport)),
                Endpoint(ipaddress.ip_address(dst), int(dport)),
            )
            translated = (
                transport,
                Endpoint(ipaddress.ip_address(rdst), int(rdport)),
                Endpoint(ipaddress.ip_address(rsrc), int(rsport)),
            )
        except ValueError:
            continue
        out.append((original, translated))
    return tuple(out)


def read_translations(path: str = PATH) -> tuple[tuple[ConnectionView, ConnectionView], ...]:
    """`parse_translations` of the conntrack table; empty when it cannot be read."""
    try:
        with open(path, encoding="ascii", errors="replace") as fh:
            lines = []
            for _ in range(MAX_LINES):
                line = fh.readline()
                if not line:
                    break
                lines.append(line)
    except OSError:
        return ()
    return parse_translations("".join(lines))
