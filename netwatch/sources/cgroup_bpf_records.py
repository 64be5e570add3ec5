"""The cgroup socket hooks' kernel programs and the records they write, as bytes (pure).

`sources.cgroup_bpf` loads these programs and reads their ring buffer; what the programs do
and what the records mean lives here, without any OS access, so both are tested on bytes.

**The program** (`tcp_connect_program`) is a `BPF_PROG_TYPE_SOCK_OPS` program attached to the
root cgroup. The kernel calls it with `op == BPF_SOCK_OPS_TCP_CONNECT_CB` from `tcp_connect()`,
inside the `connect()` system call (so in the connecting process's context) after the local
port is bound: the one moment where the process and the whole 4-tuple are both known, however
soon the connection then closes. It copies the `struct bpf_sock_ops` fields
(include/uapi/linux/bpf.h) below, asks the helpers for the caller's pid
(`bpf_get_current_pid_tgid`, 14: tgid in the upper half, as the initial PID namespace numbers
it), its name (`bpf_get_current_comm`, 16) and the socket's cookie (`bpf_get_socket_cookie`,
46, the number sock_diag reports as `idiag_cookie`), and writes one `RECORD_SIZE`-byte record
with `bpf_ringbuf_output` (130); when the ring is full it counts the lost record in an array
map (`bpf_map_lookup_elem`, 1, and an atomic add). It returns 1 whatever happens: a sock_ops
program's return value is only a reply to the kernel's question, and for this callback nothing
reads it, so a connection is never changed.

**The ring buffer** (`BPF_MAP_TYPE_RINGBUF`, the kernel's Documentation/bpf/ringbuf.rst):
a consumer position (first page, the reader writes it), a producer position (second page,
read-only), then the data area mapped twice in a row, so a record that wraps reads as one
piece. Each record starts with an 8-byte header: a 32-bit length whose bit 31 (`BUSY`)
says it is still being written and bit 30 (`DISCARD`) that it was dropped, and a page
offset the reader ignores; the next header is at the length plus 8, rounded up to 8.
`walk` reads the records between the two positions.
"""

from __future__ import annotations

import functools
import ipaddress
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from netwatch.sources import bpf_asm as a

SOCK_OPS_TCP_CONNECT_CB = 3
"""`BPF_SOCK_OPS_TCP_CONNECT_CB` (enum in include/uapi/linux/bpf.h)."""
HELPER_MAP_LOOKUP, HELPER_PID_TGID, HELPER_COMM, HELPER_SOCKET_COOKIE = 1, 14, 16, 46
HELPER_RINGBUF_OUTPUT, HELPER_MAP_UPDATE = 130, 2
IPPROTO_UDP = 17
_ADDR_PROTOCOL = 36
"""`struct bpf_sock_addr`: user_family, user_ip4, user_ip6[4], user_port, family, type,
protocol (offset 36)."""
OWNER = struct.Struct("<Q16s")
"""The UDP owner map's value: pid_tgid, comm (the key is the socket's 64-bit cookie)."""

# struct bpf_sock_ops: op, a 16-byte union, family, remote_ip4, local_ip4, remote_ip6[4],
# local_ip6[4], remote_port (network order), local_port (host order)
_OPS_OP, _OPS_FAMILY, _OPS_RIP4, _OPS_LIP4 = 0, 20, 24, 28
_OPS_RIP6, _OPS_LIP6, _OPS_RPORT, _OPS_LPORT = 32, 48, 64, 68

KIND_TCP_CONNECT = 1
"""The record's kind: a TCP connect seen by the sock_ops program."""
RECORD = struct.Struct("<QIIII4s4s16s16sQ16s")
"""pid_tgid, kind, family, local port (host order), remote port (network order, see
`decode`), local IPv4, remote IPv4, local IPv6, remote IPv6, socket cookie, comm."""
RECORD_SIZE = RECORD.size
_R_PID, _R_KIND, _R_FAMILY, _R_LPORT, _R_RPORT = 0, 8, 12, 16, 20
_R_LIP4, _R_RIP4, _R_LIP6, _R_RIP6, _R_COOKIE, _R_COMM = 24, 28, 32, 48, 64, 72
AF_INET, AF_INET6 = 2, 10

BUSY = 1 << 31
DISCARD = 1 << 30
HEADER = 8


def tcp_connect_program(ringbuf_fd: int, drops_fd: int, *, extras: bool = True) -> bytes:
    """The sock_ops program (see the module doc) writing to the ring buffer `ringbuf_fd`;
    a record the ring has no room for adds one to the first 64-bit value of the array map
    `drops_fd` (an atomic add: connects run on every CPU at once), so no loss is silent.

    Without `extras`, the cookie and the name are left zero: for a kernel whose verifier
    refuses those two helpers to sock_ops programs (the name is then read from /proc or
    process events alone)."""
    base = -RECORD_SIZE  # the record sits at the bottom of the stack frame: r10 + base
    copies = [
        (_OPS_FAMILY, _R_FAMILY), (_OPS_LPORT, _R_LPORT), (_OPS_RPORT, _R_RPORT),
        (_OPS_LIP4, _R_LIP4), (_OPS_RIP4, _R_RIP4),
        *((_OPS_LIP6 + 4 * i, _R_LIP6 + 4 * i) for i in range(4)),
        *((_OPS_RIP6 + 4 * i, _R_RIP6 + 4 * i) for i in range(4)),
    ]  # fmt: skip
    prog: list[a.Insn | a.Label | a.Jump] = [
        a.mov64_reg(a.R6, a.R1),  # r6 = ctx, kept across calls
        a.ldx(4, a.R2, a.R6, _OPS_OP),
        a.jne_imm(a.R2, SOCK_OPS_TCP_CONNECT_CB, "out"),
        a.call(HELPER_PID_TGID),
        a.stx(8, a.R10, base + _R_PID, a.R0),
        a.st_imm(4, a.R10, base + _R_KIND, KIND_TCP_CONNECT),
    ]
    for src, dst in copies:
        prog += [a.ldx(4, a.R2, a.R6, src), a.stx(4, a.R10, base + dst, a.R2)]
    if extras:
        prog += [
            a.mov64_reg(a.R1, a.R6),
            a.call(HELPER_SOCKET_COOKIE),
            a.stx(8, a.R10, base + _R_COOKIE, a.R0),
            a.mov64_reg(a.R1, a.R10),
            a.add64_imm(a.R1, base + _R_COMM),
            a.mov64_imm(a.R2, 16),
            a.call(HELPER_COMM),
        ]
    else:  # the stack must be written before the helper reads it
        prog += [a.st_imm(8, a.R10, base + off, 0) for off in (_R_COOKIE, _R_COMM, _R_COMM + 8)]
    prog += [
        *a.ld_map_fd(a.R1, ringbuf_fd),
        a.mov64_reg(a.R2, a.R10),
        a.add64_imm(a.R2, base),
        a.mov64_imm(a.R3, RECORD_SIZE),
        a.mov64_imm(a.R4, 0),
        a.call(HELPER_RINGBUF_OUTPUT),
        a.jeq_imm(a.R0, 0, "out"),
        a.st_imm(4, a.R10, base - 8, 0),  # the array's key, 0, below the record
        *a.ld_map_fd(a.R1, drops_fd),
        a.mov64_reg(a.R2, a.R10),
        a.add64_imm(a.R2, base - 8),
        a.call(HELPER_MAP_LOOKUP),
        a.jeq_imm(a.R0, 0, "out"),
        a.mov64_imm(a.R1, 1),
        a.atomic_add(8, a.R0, 0, a.R1),
        a.Label("out"),
        a.mov64_imm(a.R0, 1),
        a.exit_(),
    ]
    return a.assemble(prog)


def udp_owner_program(owners_fd: int) -> bytes:
    """A `BPF_PROG_TYPE_CGROUP_SOCK_ADDR` program for the connect and sendmsg hooks: for a
    UDP socket, stores its caller's pid and name under the socket's cookie in the LRU hash
    map `owners_fd`, which the start watcher reads by the cookie sock_diag gives for a DNS
    query's socket (the local port is not bound yet when `connect()` runs the hook, so the
    cookie, not the 4-tuple, is the key). Returns 1: the call goes on unchanged (0 would
    refuse it)."""
    prog: list[a.Insn | a.Label | a.Jump] = [
        a.mov64_reg(a.R6, a.R1),
        a.ldx(4, a.R2, a.R6, _ADDR_PROTOCOL),
        a.jne_imm(a.R2, IPPROTO_UDP, "out"),
        a.mov64_reg(a.R1, a.R6),
        a.call(HELPER_SOCKET_COOKIE),
        a.stx(8, a.R10, -8, a.R0),  # key: the cookie
        a.call(HELPER_PID_TGID),
        a.stx(8, a.R10, -32, a.R0),  # value: pid_tgid, then the name
        a.mov64_reg(a.R1, a.R10),
        a.add64_imm(a.R1, -24),
        a.mov64_imm(a.R2, 16),
        a.call(HELPER_COMM),
        *a.ld_map_fd(a.R1, owners_fd),
        a.mov64_reg(a.R2, a.R10),
        a.add64_imm(a.R2, -8),
        a.mov64_reg(a.R3, a.R10),
        a.add64_imm(a.R3, -32),
        a.mov64_imm(a.R4, 0),  # BPF_ANY: a socket that sends again keeps its entry fresh
        a.call(HELPER_MAP_UPDATE),
        a.Label("out"),
        a.mov64_imm(a.R0, 1),
        a.exit_(),
    ]
    return a.assemble(prog)


def decode_owner(value: bytes) -> tuple[int, str] | None:
    """The (pid, name) an owner map value holds, None for a value of another size."""
    if len(value) != OWNER.size:
        return None
    pid_tgid, comm = OWNER.unpack(value)
    return pid_tgid >> 32, comm.split(b"\0", 1)[0].decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class ConnectRecord:
    """One connect the kernel program saw: who, from where to where, which socket."""

    pid: int
    """The process (thread group) id, in the initial PID namespace."""
    tid: int
    family: int
    local: tuple[str, int]
    remote: tuple[str, int]
    cookie: int
    """The socket's cookie (sock_diag's `idiag_cookie`); 0 when unknown."""
    comm: str
    """The kernel's name for the calling thread (at most 15 characters)."""


def decode(data: bytes) -> ConnectRecord | None:
    """A record's bytes as `ConnectRecord`; None for what is not a whole TCP connect record
    of IPv4 or IPv6 (a ring buffer shared with a newer program, damaged bytes)."""
    if len(data) < RECORD_SIZE:
        return None
    pid_tgid, kind, family, lport, rport, lip4, rip4, lip6, rip6, cookie, comm = RECORD.unpack_from(
        data
    )
    if kind != KIND_TCP_CONNECT or lport > 0xFFFF:
        return None
    if family == AF_INET:
        local, remote = _v4_text(lip4), _v4_text(rip4)
    elif family == AF_INET6:
        local6, remote6 = ipaddress.IPv6Address(lip6), ipaddress.IPv6Address(rip6)
        # a dual-stack socket talking IPv4 shows up as v4-mapped addresses: say it as IPv4
        local = str(local6.ipv4_mapped or local6)
        remote = str(remote6.ipv4_mapped or remote6)
    else:
        return None
    # The remote port is in network order in the word's first two bytes on older kernels,
    # in its last two since the kernel shifted it (`bpf_sock_ops.remote_port`'s upper half,
    # on little-endian hosts); a connect's port is never 0, so whichever half is set is it.
    raw = rport.to_bytes(4, "little")
    port = int.from_bytes(raw[:2] if raw[:2] != b"\0\0" else raw[2:], "big")
    name = comm.split(b"\0", 1)[0].decode("utf-8", "replace")
    return ConnectRecord(
        pid_tgid >> 32, pid_tgid & 0xFFFFFFFF, family, (local, lport), (remote, port), cookie, name
    )


@functools.lru_cache(maxsize=4096)
def _v4_text(address: int) -> str:
    """An IPv4 address's text, remembered: a connect storm repeats its few addresses, and
    `ipaddress` makes and prints an object per call."""
    return str(ipaddress.IPv4Address(address))


def walk(
    data: bytes | memoryview, mask: int, consumer: int, producer: int, limit: int
) -> tuple[list[bytes], int]:
    """The records between `consumer` and `producer` (at most `limit`) and the position to
    store as the new consumer position.

    `data` is the data area mapped twice (`mask + 1` bytes each time), so a record read at
    `position & mask` never needs two pieces. Stops at a record still being written (`BUSY`:
    the next read takes it); skips discarded ones; a length that would run past the producer
    (a damaged header) ends the walk at the producer, dropping what is left.
    """
    out: list[bytes] = []
    pos = consumer
    while pos < producer and len(out) < limit:
        at = pos & mask
        if at + HEADER > len(data):
            return out, producer
        (word,) = struct.unpack_from("<I", data, at)
        if word & BUSY:
            break
        length = word & ~(BUSY | DISCARD)
        step = (length + HEADER + 7) & ~7
        if pos + step > producer or at + HEADER + length > len(data):
            return out, producer
        if not word & DISCARD:
            out.append(bytes(data[at + HEADER : at + HEADER + length]))
        pos += step
    return out, pos


def records(items: list[bytes]) -> Iterator[ConnectRecord]:
    """The decodable records among `items`."""
    for item in items:
        rec = decode(item)
        if rec is not None:
            yield rec
