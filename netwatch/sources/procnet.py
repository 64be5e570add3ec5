"""The /proc/net text tables: raw, ICMP ("ping") and packet sockets, and a UDP fallback.

sock_diag (`sources.netlink`) covers TCP and UDP; the rarer raw, ping and AF_PACKET sockets
are read from the tables the kernel prints, which share the `tcp` table's layout. Malformed
lines are skipped, never raised.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from netwatch.sources import netlink


@dataclass(frozen=True, slots=True)
class ProcNetRow:
    """One line of /proc/net/{raw,raw6,icmp,icmp6}; `lport` is the protocol for raw sockets."""

    family: int
    src: bytes
    lport: int
    dst: bytes
    rport: int
    state: int
    uid: int
    inode: int


def _hex_addr(text: str) -> bytes:
    """/proc/net prints each 32-bit word of the address in host byte order."""
    raw = bytes.fromhex(text)
    if len(raw) not in (4, 16):
        raise ValueError("bad address length")
    return b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4)) if _LITTLE else raw


_LITTLE = struct.pack("=I", 1) == struct.pack("<I", 1)


def parse_proc_net(text: str, family: int) -> Iterator[ProcNetRow]:
    """Rows of a /proc/net inet table; malformed lines are skipped."""
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 10:
            continue
        try:
            lhex, lport = parts[1].split(":")
            rhex, rport = parts[2].split(":")
            yield ProcNetRow(
                family=family,
                src=_hex_addr(lhex),
                lport=int(lport, 16),
                dst=_hex_addr(rhex),
                rport=int(rport, 16),
                state=int(parts[3], 16),
                uid=int(parts[7]),
                inode=int(parts[9]),
            )
        except ValueError:
            continue


def read_proc_net(name: str, family: int, root: str = "/proc/net") -> list[ProcNetRow]:
    """Read one /proc/net table; a missing table (no IPv6, no module) is empty."""
    try:
        with open(os.path.join(root, name), encoding="ascii", errors="replace") as fh:
            return list(parse_proc_net(fh.read(), family))
    except OSError:
        return []


def read_packet_sockets(root: str = "/proc/net") -> list[tuple[int, int, int]]:
    """(ethertype, uid, inode) of every AF_PACKET socket in /proc/net/packet."""
    try:
        with open(os.path.join(root, "packet"), encoding="ascii", errors="replace") as fh:
            lines = fh.read().splitlines()[1:]
    except OSError:
        return []
    out = []
    for line in lines:
        parts = line.split()
        if len(parts) < 9:
            continue
        try:
            # The kernel prints ntohs(protocol): the ethertype itself (0003 = ETH_P_ALL).
            out.append((int(parts[3], 16), int(parts[7]), int(parts[8])))
        except ValueError:
            continue
    return out


def as_record(row: ProcNetRow) -> netlink.Record:
    """A /proc/net row in the shape of a diag record (no counters; the inode as cookie)."""
    ident = netlink.make_ident(row.lport, row.rport, row.src, row.dst, row.inode)
    return (row.family, row.state, ident, row.uid, row.inode, b"")
