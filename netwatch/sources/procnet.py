"""The /proc/net text tables: raw, ICMP ("ping") and packet sockets, a UDP fallback, and a
namespace's own addresses.

sock_diag (`sources.netlink`) covers TCP and UDP; the rarer raw, ping and AF_PACKET sockets
are read from the tables the kernel prints, which share the `tcp` table's layout. Malformed
lines are skipped, never raised.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

from netwatch.model import IPAddress
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
_WIDTH: dict[int, int] = {socket.AF_INET: 4, socket.AF_INET6: 16}


def parse_proc_net(text: str, family: int) -> Iterator[ProcNetRow]:
    """Rows of a /proc/net inet table; malformed lines are skipped."""
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 10:
            continue
        try:
            lhex, lport = parts[1].split(":")
            rhex, rport = parts[2].split(":")
            row = ProcNetRow(
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
        # Out of range is as malformed as unparsable: a port must fit the kernel's 16 bits.
        if (
            len(row.src) == len(row.dst) == _WIDTH.get(family)
            and 0 <= row.lport <= 0xFFFF
            and 0 <= row.rport <= 0xFFFF
            and 0 <= row.state <= 0xFF
            and 0 <= row.uid <= 0xFFFFFFFF
            and 0 <= row.inode <= 0xFFFFFFFFFFFFFFFF
        ):
            yield row


def read_proc_net(name: str, family: int, root: str = "/proc/net") -> list[ProcNetRow]:
    """Read one /proc/net table; a missing table (no IPv6, no module) is empty."""
    try:
        with open(os.path.join(root, name), encoding="ascii", errors="replace") as fh:
            return list(parse_proc_net(fh.read(), family))
    except OSError:
        return []


class PacketRow(NamedTuple):
    """One AF_PACKET socket of /proc/net/packet (a tuple, so a row can key a cache)."""

    protocol: int
    """The ethertype it receives (0x0003 ETH_P_ALL: every frame; 0: none, a sender)."""
    ifindex: int
    """The interface it is bound to; 0: every interface."""
    uid: int
    inode: int


def parse_packet_sockets(text: str) -> list[PacketRow]:
    """Rows of /proc/net/packet (`sk RefCnt Type Proto Iface R Rmem User Inode`, the
    kernel's `packet_seq_show`); malformed lines are skipped."""
    out = []
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 9:
            continue
        try:
            # The kernel prints ntohs(protocol): the ethertype itself (0003 = ETH_P_ALL).
            row = PacketRow(int(parts[3], 16), int(parts[4]), int(parts[7]), int(parts[8]))
        except ValueError:
            continue
        if min(row) >= 0:
            out.append(row)
    return out


def read_packet_sockets(root: str = "/proc/net") -> list[PacketRow]:
    """Every AF_PACKET socket of this network namespace, from /proc/net/packet."""
    try:
        with open(os.path.join(root, "packet"), encoding="ascii", errors="replace") as fh:
            return parse_packet_sockets(fh.read())
    except OSError:
        return []


def as_record(row: ProcNetRow) -> netlink.Record:
    """A /proc/net row in the shape of a diag record (no counters; the inode as cookie)."""
    ident = netlink.make_ident(row.lport, row.rport, row.src, row.dst, row.inode)
    return (row.family, row.state, ident, row.uid, row.inode, b"")


def parse_fib_trie_local(text: str) -> set[ipaddress.IPv4Address]:
    """The IPv4 addresses a namespace owns, from its /proc/net/fib_trie: each leaf
    (`|-- ADDR`) followed by a `/32 host LOCAL` line (the kernel's `fib_trie_seq_show`; a
    local route for a whole prefix, such as `127.0.0.0/8`, is not an address). Lines that
    do not parse are skipped."""
    found: set[ipaddress.IPv4Address] = set()
    leaf: ipaddress.IPv4Address | None = None
    for line in text.splitlines():
        part = line.strip()
        if part.startswith("|-- "):
            try:
                leaf = ipaddress.IPv4Address(part[4:].strip())
            except ValueError:
                leaf = None
        elif part.startswith("+--"):
            leaf = None
        elif leaf is not None and part.split()[:3] == ["/32", "host", "LOCAL"]:
            found.add(leaf)
    return found


def parse_if_inet6(text: str) -> set[ipaddress.IPv6Address]:
    """The IPv6 addresses a namespace owns, from its /proc/net/if_inet6 (first field: 32
    hex digits). Lines that do not parse are skipped."""
    found: set[ipaddress.IPv6Address] = set()
    for line in text.splitlines():
        parts = line.split()
        if not parts or len(parts[0]) != 32:
            continue
        try:
            found.add(ipaddress.IPv6Address(bytes.fromhex(parts[0])))
        except ValueError:
            continue
    return found


def read_addresses(root: str = "/proc/net") -> frozenset[IPAddress]:
    """Every address of the network namespace whose /proc/net is `root` (its own view, so
    a container's through /proc/<pid>/net); a table that cannot be read adds nothing."""
    found: set[IPAddress] = set()
    parsers: tuple[tuple[str, Callable[[str], set[Any]]], ...] = (
        ("fib_trie", parse_fib_trie_local),
        ("if_inet6", parse_if_inet6),
    )
    for name, parse in parsers:
        try:
            with open(os.path.join(root, name), encoding="ascii", errors="replace") as fh:
                found.update(parse(fh.read(1 << 20)))
        except OSError:
            continue
    return frozenset(found)
