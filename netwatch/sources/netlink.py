"""Linux socket enumeration through NETLINK_SOCK_DIAG (inet_diag), parsed with `struct`.

This is what `ss` does: one dump request per (family, protocol) and a stream of
`inet_diag_msg` replies, each with the socket's endpoints, state, uid, inode and, for TCP,
the kernel's `tcp_info` (byte and segment counters psutil does not expose). No library on
PyPI wraps sock_diag with tcp_info in a maintained, typed way (pyroute2's diag module is
large and slower to parse), so the few fixed layouts are read here directly.

Parsing never raises on malformed input: a truncated or garbled message is skipped and the
dump goes on, so a kernel with a different `tcp_info` length only loses the counters it lacks.
Raw, ICMP ("ping") and packet sockets come from /proc/net instead (`sources.procnet`).
"""

from __future__ import annotations

import itertools
import socket
import struct
from collections.abc import Sequence
from typing import NamedTuple

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
TCPDIAG_GETSOCK = 18
"""The older inet_diag request: it alone accepts AF_UNSPEC, so one walk of the kernel's
TCP hash table returns IPv4 and IPv6 sockets (the walk, not the sockets, is most of a
dump's kernel time on a quiet machine: 262,144 buckets per walk here)."""
_SOCKET_MESSAGES = frozenset((SOCK_DIAG_BY_FAMILY, TCPDIAG_GETSOCK))
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
INET_DIAG_INFO = 2

_NLMSGHDR = struct.Struct("=IHHII")
_LEN_TYPE = struct.Struct("=IH")
_REQ = struct.Struct("=BBBBI")
_UID_INODE = struct.Struct("=II")
_RTA = struct.Struct("=HH")
_U64 = struct.Struct("=Q")
_U32 = struct.Struct("=I")

# Offsets from the start of a netlink message (16-byte nlmsghdr, then inet_diag_msg).
_ID = 16 + 4  # inet_diag_sockid: sport, dport (be16), src[16], dst[16], if, cookie[2]
_UID = _ID + 48 + 12  # after expires, rqueue, wqueue
_MIN_MSG = 16 + 72

# Offsets inside struct tcp_info (linux/tcp.h); older kernels send a shorter struct.
TCPI_BYTES_ACKED = 120
TCPI_BYTES_RECEIVED = 128
TCPI_SEGS_OUT = 136
TCPI_SEGS_IN = 140
_COUNTERS_END = TCPI_SEGS_IN + 4

TCP_STATES = {
    1: "ESTABLISHED",
    2: "SYN_SENT",
    3: "SYN_RECV",
    4: "FIN_WAIT1",
    5: "FIN_WAIT2",
    6: "TIME_WAIT",
    7: "CLOSE",
    8: "CLOSE_WAIT",
    9: "LAST_ACK",
    10: "LISTEN",
    11: "CLOSING",
    12: "SYN_RECV",  # TCP_NEW_SYN_RECV: a request socket before accept
}


_NOCOOKIE = 0xFFFFFFFFFFFFFFFF
"""INET_DIAG_NOCOOKIE: match a socket by its endpoints alone."""
_MAPPED = bytes(10) + b"\xff\xff"
"""The prefix of an IPv4-mapped IPv6 address (::ffff:a.b.c.d)."""


def _family(raw: bytes) -> int:
    return socket.AF_INET if len(raw) == 4 else socket.AF_INET6


REREAD_CHUNK = 32
"""One-socket requests `DiagSocket.reread_many` sends in one write, at most."""
_REPLY_COST = 4096
"""Receive-buffer space one reply may take, generously (a ~600-byte message in its skb)."""
_REPLY_ROOM = 8192
"""Room left in the reply buffer before reading the next reply (one is under 1 KB)."""


class NetlinkUnavailableError(OSError):
    """sock_diag cannot be used here (no netlink, module missing, or a kernel error)."""


Record = tuple[int, int, bytes, int, int, bytes]
"""One socket as the kernel described it: family, state, ident, uid, inode, counters.

The parser hands out plain tuples (a fifth of a dump's parsing went into wrapping each in a
named tuple); `DiagRecord` names the same fields where a reader wants them by name.
"""


class DiagRecord(NamedTuple):
    """A `Record` with its fields named, kept as raw bytes so parsing stays cheap.

    `ident` is the kernel's `inet_diag_sockid` (ports, addresses, interface, and the socket
    cookie, unique per socket): stable for the life of a connected socket, so the sampler
    uses it as its cache key and decodes endpoints from it only for sockets it has not seen.
    `counters` is the raw tcp_info slice holding the byte and segment counters (b"" if absent).
    """

    family: int
    state: int
    ident: bytes
    uid: int
    inode: int
    counters: bytes

    @property
    def sport(self) -> int:
        """Local port."""
        return int.from_bytes(self.ident[0:2], "big")

    @property
    def dport(self) -> int:
        """Remote port (0 when unconnected)."""
        return int.from_bytes(self.ident[2:4], "big")

    @property
    def src(self) -> bytes:
        """Local address, 4 or 16 bytes."""
        return self.ident[4 : 8 if self.family == socket.AF_INET else 20]

    @property
    def dst(self) -> bytes:
        """Remote address, 4 or 16 bytes (all zero when unconnected)."""
        return self.ident[20 : 24 if self.family == socket.AF_INET else 36]


def make_ident(sport: int, dport: int, src: bytes, dst: bytes, cookie: int) -> bytes:
    """An `ident` (`inet_diag_sockid`) in the kernel's layout: for sockets read from /proc/net
    text tables, and for the one socket a lookup asks about."""
    return (
        sport.to_bytes(2, "big")
        + dport.to_bytes(2, "big")
        + src.ljust(16, b"\0")
        + dst.ljust(16, b"\0")
        + bytes(4)
        + (cookie & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "little")
    )


def build_request(family: int, protocol: int, states: int = 0xFFFFFFFF, seq: int = 1) -> bytes:
    """Build one SOCK_DIAG_BY_FAMILY dump request asking for tcp_info (INET_DIAG_INFO)."""
    ext = 1 << (INET_DIAG_INFO - 1) if protocol == socket.IPPROTO_TCP else 0
    body = _REQ.pack(family, protocol, ext, 0, states) + bytes(48)
    header = _NLMSGHDR.pack(
        _NLMSGHDR.size + len(body), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, seq, 0
    )
    return header + body


def build_lookup_request(
    family: int,
    protocol: int,
    local: tuple[bytes, int],
    remote: tuple[bytes, int],
    seq: int = 1,
    counters: bool = False,
) -> bytes:
    """Build a SOCK_DIAG_BY_FAMILY request for the one socket local <-> remote (no dump).

    Addresses are 4 or 16 raw bytes; the cookie is INET_DIAG_NOCOOKIE (match by endpoints).
    `counters` asks for tcp_info too (TCP only).
    """
    (src, sport), (dst, dport) = local, remote
    sockid = make_ident(sport, dport, src, dst, _NOCOOKIE)
    return _one_request(family, protocol, sockid, counters, seq)


def build_reread_request(family: int, ident: bytes, seq: int = 1) -> bytes:
    """Build a SOCK_DIAG_BY_FAMILY request for the TCP socket `ident` names, with tcp_info.

    `ident` is a record's `inet_diag_sockid` as the kernel gave it, cookie included, so the
    kernel answers for that very socket or not at all (ESTALE if its 4-tuple was reused).
    """
    return _one_request(family, socket.IPPROTO_TCP, ident, True, seq)


def _one_request(family: int, protocol: int, sockid: bytes, counters: bool, seq: int) -> bytes:
    """A SOCK_DIAG_BY_FAMILY request (no dump) for the socket `sockid` names."""
    ext = 1 << (INET_DIAG_INFO - 1) if counters and protocol == socket.IPPROTO_TCP else 0
    body = _REQ.pack(family, protocol, ext, 0, 0xFFFFFFFF) + sockid
    header = _NLMSGHDR.pack(_NLMSGHDR.size + len(body), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, seq, 0)
    return header + body


def build_tcp_request(seq: int = 1) -> bytes:
    """Build the TCPDIAG_GETSOCK dump request for every TCP socket of both families."""
    ext = 1 << (INET_DIAG_INFO - 1)
    # struct inet_diag_req: family, src_len, dst_len, ext, sockid, states, dbs.
    body = struct.pack("=BBBB48xII", socket.AF_UNSPEC, 0, 0, ext, 0xFFFFFFFF, 0)
    header = _NLMSGHDR.pack(
        _NLMSGHDR.size + len(body), TCPDIAG_GETSOCK, NLM_F_REQUEST | NLM_F_DUMP, seq, 0
    )
    return header + body


def parse_messages(
    buf: bytes | memoryview,
    out: list[Record],
    counters: bool = True,
    uniform: bool = True,
    errors: list[int] | None = None,
) -> bool:
    """Append every well-formed inet_diag message in `buf` to `out`; True once DONE is seen.

    Raises `NetlinkUnavailableError` for an NLMSG_ERROR reply (e.g. ENOENT: the diag module
    for that protocol is not loaded), unless `errors` is given: then its errno goes there and
    parsing goes on (the replies to many one-socket requests, some of them for sockets gone).
    Truncated or garbled messages end the buffer quietly.
    This loop runs once per socket, so it unpacks as little as it can: the position of the
    tcp_info attribute is learnt from one message and tried first on the next, and runs of
    same-shaped messages are unpacked in C (`uniform`; off only to test it against the loop).
    """
    data = bytes(buf)
    end = len(data)
    fast = counters and uniform
    off = _parse_uniform(data, out, 0) if fast else 0
    hint = 0
    append = out.append
    while off + 16 <= end:
        length, kind = _LEN_TYPE.unpack_from(data, off)
        if length < 16 or off + length > end:
            return False
        if kind in _SOCKET_MESSAGES:
            if length >= _MIN_MSG:
                uid, inode = _UID_INODE.unpack_from(data, off + _UID)
                found = b""
                if counters:
                    found, hint = _tcp_counters(data, off, off + length, hint)
                append(
                    (
                        data[off + 16],
                        data[off + 17],
                        data[off + _ID : off + _ID + 48],
                        uid,
                        inode,
                        found,
                    )
                )
        elif kind == NLMSG_DONE:
            return True
        elif kind == NLMSG_ERROR:
            if errors is None:
                raise NetlinkUnavailableError(_errno_of(data, off, length), "sock_diag dump failed")
            errors.append(_errno_of(data, off, length))
        off += (length + 3) & ~3
        if fast and kind in _SOCKET_MESSAGES:
            off = _parse_uniform(data, out, off)  # back to C after e.g. a TIME_WAIT socket
    return False


def _parse_uniform(data: bytes, out: list[Record], start: int) -> int:
    """Parse the run of same-shaped TCP messages at `start` in C (`struct.iter_unpack`).

    A dump is mostly runs of one shape: established connections (one length, the same
    attributes, tcp_info at one offset) and TIME_WAIT sockets (no tcp_info). The shape is
    read from the first message; every message of the run must have the same length, type
    and attribute headers, and the run is unpacked in one call. The generic loop takes over
    at the first message that differs. Returns where it stopped.
    """
    end = len(data)
    if start + _MIN_MSG > end:
        return start
    length, kind = (int(x) for x in _LEN_TYPE.unpack_from(data, start))
    if kind not in _SOCKET_MESSAGES or length < _MIN_MSG or length & 3 or start + length > end:
        return start
    attrs = _attributes(data, start, length)
    if attrs is None:
        return start
    shape = (length, attrs)
    structs = _HEADS.get(shape) or _shapes(length, attrs)
    if structs is None:
        return start
    head, body = structs
    view = memoryview(data)[start : start + (end - start) // length * length]
    expected = (
        length,
        kind,
        *(x for _, rta_len, rta_type in attrs for x in (rta_len, rta_type)),
    )
    run = len(list(itertools.takewhile(expected.__eq__, head.iter_unpack(view))))
    out.extend(body.iter_unpack(view[: run * length]))
    return start + run * length


_Attrs = tuple[tuple[int, int, int], ...]
_HEADS: dict[tuple[int, _Attrs], tuple[struct.Struct, struct.Struct] | None] = {}


def _attributes(data: bytes, start: int, length: int) -> _Attrs | None:
    """(offset, length, type) of each attribute of a message, or None if they do not tile it."""
    attrs = []
    at = _MIN_MSG
    while at + 4 <= length:
        rta_len, rta_type = _RTA.unpack_from(data, start + at)
        if rta_len < 4 or at + rta_len > length:
            return None
        attrs.append((at, int(rta_len), int(rta_type)))
        at += (rta_len + 3) & ~3
    return tuple(attrs) if at == length else None


def _shapes(length: int, attrs: _Attrs) -> tuple[struct.Struct, struct.Struct] | None:
    """The structs that check and unpack messages of one shape (None: not worth a fast path)."""
    head_fmt = ["=IH"]
    pos = 6
    info = None
    for at, rta_len, rta_type in attrs:
        head_fmt.append(f"{at - pos}xHH")
        pos = at + 4
        if rta_type == INET_DIAG_INFO and info is None:
            info = (at, rta_len)
    head_fmt.append(f"{length - pos}x")
    if info is None:
        body = struct.Struct(f"=16xBB2x48s12xII{length - _MIN_MSG}x0s")
    elif info[1] < 4 + _COUNTERS_END:
        structs = None  # an old kernel's short tcp_info: the generic loop slices what is there
        return _HEADS.setdefault((length, attrs), structs)
    else:
        hint = info[0]
        body = struct.Struct(
            f"=16xBB2x48s12xII{hint - _MIN_MSG}x{4 + TCPI_BYTES_ACKED}x"
            f"{_COUNTERS_END - TCPI_BYTES_ACKED}s{length - hint - 4 - _COUNTERS_END}x"
        )
    return _HEADS.setdefault((length, attrs), (struct.Struct("".join(head_fmt)), body))


def _errno_of(data: bytes, off: int, length: int) -> int:
    if length < 20:
        return 0
    raw = int(struct.unpack_from("=i", data, off + 16)[0])
    return -raw if raw < 0 else raw


def _tcp_counters(data: bytes, msg: int, end: int, hint: int) -> tuple[bytes, int]:
    """The INET_DIAG_INFO counter slice of the message at `msg` (or b""), and where it was."""
    if hint:
        at = msg + hint
        if at + 4 <= end:
            rta_len, rta_type = _RTA.unpack_from(data, at)
            if rta_type == INET_DIAG_INFO and rta_len >= 4 and at + rta_len <= end:
                info = at + 4
                stop = min(at + rta_len, info + _COUNTERS_END)
                return data[info + TCPI_BYTES_ACKED : stop], hint
    at = msg + _MIN_MSG
    while at + 4 <= end:
        rta_len, rta_type = _RTA.unpack_from(data, at)
        if rta_len < 4 or at + rta_len > end:
            return b"", 0
        if rta_type == INET_DIAG_INFO:
            info = at + 4
            stop = min(at + rta_len, info + _COUNTERS_END)
            return data[info + TCPI_BYTES_ACKED : stop], at - msg
        at += (rta_len + 3) & ~3
    return b"", 0


def decode_counters(counters: bytes) -> tuple[int | None, int | None, int | None, int | None]:
    """bytes_acked, bytes_received, segs_out, segs_in from a counter slice (None if absent)."""
    n = len(counters)
    acked = _U64.unpack_from(counters, 0)[0] if n >= 8 else None
    received = _U64.unpack_from(counters, 8)[0] if n >= 16 else None
    segs_out = _U32.unpack_from(counters, 16)[0] if n >= 20 else None
    segs_in = _U32.unpack_from(counters, 20)[0] if n >= 24 else None
    return acked, received, segs_out, segs_in


class DiagSocket:
    """A NETLINK_SOCK_DIAG socket that dumps one (family, protocol) table per call."""

    def __init__(self, bufsize: int = 1 << 16) -> None:
        try:
            self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG)
        except (OSError, AttributeError) as exc:
            raise NetlinkUnavailableError(getattr(exc, "errno", 0), str(exc)) from None
        self._sock.settimeout(5.0)
        self._buf = bytearray(bufsize)
        self._seq = 0
        try:
            rcvbuf = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        except OSError:
            rcvbuf = 0
        self._chunk = max(1, min(REREAD_CHUNK, rcvbuf // _REPLY_COST))
        """Requests a write of `reread_many` (their replies must all fit the receive buffer)."""

    def dump(self, family: int, protocol: int) -> list[Record]:
        """Every socket of one family and protocol, in kernel order."""
        return self._dump(build_request(family, protocol, seq=self._seq + 1), protocol)

    def dump_tcp(self) -> list[Record]:
        """Every TCP socket, IPv4 and IPv6, in one walk (see `TCPDIAG_GETSOCK`)."""
        return self._dump(build_tcp_request(seq=self._seq + 1), socket.IPPROTO_TCP)

    def _dump(self, request: bytes, protocol: int) -> list[Record]:
        self._seq += 1
        out: list[Record] = []
        try:
            self._sock.send(request)
            view = memoryview(self._buf)
            while True:
                n = self._sock.recv_into(self._buf)
                if n == 0 or parse_messages(view[:n], out, protocol == socket.IPPROTO_TCP):
                    return out
        except NetlinkUnavailableError:
            raise
        except OSError as exc:
            raise NetlinkUnavailableError(exc.errno or 0, f"sock_diag: {exc}") from None

    def lookup(
        self,
        family: int,
        protocol: int,
        local: tuple[bytes, int],
        remote: tuple[bytes, int],
        counters: bool = False,
    ) -> DiagRecord | None:
        """The one socket local <-> remote as the kernel lists it now, or None if it has none.

        One request and one reply, however many sockets the machine has: what a connection's
        first packet needs to find its socket before a short exchange closes it.
        """
        self._seq += 1
        request = build_lookup_request(family, protocol, local, remote, self._seq, counters)
        found = self._one(request, counters)
        return DiagRecord._make(found) if found is not None else None

    def find(
        self,
        protocol: int,
        local: tuple[bytes, int],
        remote: tuple[bytes, int],
        counters: bool = False,
    ) -> DiagRecord | None:
        """The TCP or UDP socket of this host that talks local <-> remote now, or None.

        Addresses are 4 or 16 raw bytes. An IPv4 pair may belong to an IPv6 socket (a
        dual-stack socket sees it as IPv4-mapped), so it is asked both ways. udp_diag finds
        the socket a datagram from the first endpoint to the second would reach, connected
        or not, so UDP is asked remote-first. Only an answer on these endpoints counts: TCP
        may answer with the listener of the port, UDP with the socket bound to it (kept:
        that socket is the one that talks).
        """
        tries = [(_family(local[0]), local[0], remote[0])]
        if len(local[0]) == 4 and len(remote[0]) == 4:
            tries.append((socket.AF_INET6, _MAPPED + local[0], _MAPPED + remote[0]))
        for family, here, there in tries:
            if protocol == socket.IPPROTO_UDP:
                found = self.lookup(family, protocol, (there, remote[1]), (here, local[1]))
                if found is not None and found.sport == local[1]:
                    return found
                continue
            found = self.lookup(
                family, protocol, (here, local[1]), (there, remote[1]), counters=counters
            )
            if found is not None and (found.sport, found.dport, found.dst) == (
                local[1],
                remote[1],
                there,
            ):
                return found
        return None

    def reread(self, family: int, ident: bytes) -> Record | None:
        """The TCP socket `ident` names, with its tcp_info now; None once it is gone.

        What the sampler asks between full dumps for the sockets capture saw traffic on: one
        request per socket instead of a walk of the whole table.
        """
        self._seq += 1
        found = self._one(build_reread_request(family, ident, self._seq), True)
        # The kernel may answer a lookup with the listener of that port: only the same socket.
        return found if found is not None and found[2] == ident else None

    def reread_many(self, wanted: Sequence[tuple[int, bytes]]) -> list[Record | None]:
        """`reread` of each (family, ident) of `wanted`, in order, a chunk of requests a write.

        A refresh re-reads a few hundred sockets; one request and one reply each was two
        system calls and one parse per socket. The kernel answers every request of a write
        before the write returns (it hands sock_diag the whole buffer, answered in this
        thread), each with exactly one message: the socket, or an error (gone). So the
        replies are read as they lie, and parsed in one pass, where a run of same-shaped
        records is unpacked in C. The chunk is sized so its replies fit the receive buffer.
        """
        out: list[Record | None] = []
        for at in range(0, len(wanted), self._chunk):
            out.extend(self._reread_chunk(wanted[at : at + self._chunk]))
        return out

    def _reread_chunk(self, wanted: Sequence[tuple[int, bytes]]) -> list[Record | None]:
        requests = []
        for family, ident in wanted:
            self._seq += 1
            requests.append(build_reread_request(family, ident, self._seq))
        records: list[Record] = []
        errors: list[int] = []
        buf = self._buf
        view = memoryview(buf)
        try:
            self._sock.send(b"".join(requests))
            off = 0
            for _ in wanted:  # one reply each, queued already
                if len(buf) - off < _REPLY_ROOM:
                    parse_messages(view[:off], records, errors=errors)
                    off = 0
                n = self._sock.recv_into(view[off:])
                off += (n + 3) & ~3
            parse_messages(view[:off], records, errors=errors)
        except OSError as exc:  # e.g. ENOBUFS: replies were lost, others may still be queued
            self._drain()
            raise NetlinkUnavailableError(exc.errno or 0, f"sock_diag: {exc}") from None
        # The kernel may answer a lookup with the listener of that port: only the same socket.
        found = {r[2]: r for r in records}
        return [found.get(ident) for _, ident in wanted]

    def _drain(self) -> None:
        """Drop whatever replies are still queued, so the next request (the full dump the
        sampler falls back to) does not read them as its own."""
        timeout = self._sock.gettimeout()
        try:
            self._sock.setblocking(False)
            while self._sock.recv_into(self._buf):
                pass
        except OSError:
            pass  # BlockingIOError: nothing left (or the socket is unusable: the dump says so)
        finally:
            self._sock.settimeout(timeout)

    def _one(self, request: bytes, counters: bool) -> Record | None:
        """Send a one-socket request; its record, or None for ENOENT / ESTALE (no such
        socket, or its 4-tuple now names another one)."""
        out: list[Record] = []
        try:
            self._sock.send(request)
            n = self._sock.recv_into(self._buf)
            parse_messages(memoryview(self._buf)[:n], out, counters=counters)
        except NetlinkUnavailableError:
            return None
        except OSError as exc:
            raise NetlinkUnavailableError(exc.errno or 0, f"sock_diag: {exc}") from None
        return out[0] if out else None

    def close(self) -> None:
        """Close the netlink socket."""
        self._sock.close()
