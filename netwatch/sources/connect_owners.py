"""Who opened a connection, found when its first packet leaves: for exchanges shorter than a tick.

The socket table is sampled once a second; a short exchange (the VPN Gate list fetch that sent
5 bytes and received 4 KB, a DNS-over-TCP query, a beacon) opens, talks and closes between two
samples, so capture sees its packets but no sample ever lists its socket or process. So, much
as OpenSnitch's /proc method does, connection starts are watched, the kernel is asked for that
one socket at once, and the process holding it is found before it closes.

A second packet socket with a BPF filter takes only outgoing TCP SYNs and DNS queries (the
kernel filters, so ordinary traffic costs nothing here; a program's own DNS lookup uses a UDP
socket that lives for one answer), read by a thread. For each it asks sock_diag for
that one socket at once (`DiagSocket.lookup`: one request, whatever the socket count), then
reads fd links to find the holder of its inode: first the processes that connected lately,
then the socket user's processes the last sample did not know, newest pid first (a command
just started, like `curl`), then the owners in the last sample. What it finds is kept by flow
key for `keep` seconds for `CaptureFlows` to attribute the flow with. The wider searches may
use 2% of a core and all of it 5% (`budget`, `cap`): in a connection storm the rest is left
to the samples and counted as missed. `bench/connects.py` measures it: against a server that
answers in 30 ms, every connection is named at 10 and 100 a second (0.4% and about 3.5% of a
core), and the cost stays near 5.5% at 2,000 a second; against one that answers at once (the
socket gone within a millisecond) three in four are named at 10 a second. Incoming
connections need none of this: their listener is in every sample.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from netwatch.model import FlowKey, PacketMeta, ProcessRef, SocketTable, Transport
from netwatch.sources import netlink
from netwatch.sources.capture import LiveCapture
from netwatch.sources.decode import PacketDecoder
from netwatch.sources.processes import (
    ProcessReader,
    PsutilReader,
    find_holders,
    list_pids,
    stat_identity,
)

PACKET_OUTGOING = 4
START_FILTER = (
    "(ip and tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn)"
    " or (ip6 and ip6[6] == 6 and ip6[53] & 0x12 == 0x02)"
    " or (udp dst port 53)"
)
"""Connection starts: TCP SYN without ACK (IPv6 without extension headers), and DNS queries
(a program's own lookups use a UDP socket that lives for one answer)."""
_START_COMPILED = b"".join(
    struct.pack("HBBI", *insn)
    for insn in (
        (0x30, 0, 0, 0x0), (0x54, 0, 0, 0xF0), (0x15, 0, 14, 0x40), (0x30, 0, 0, 0x9),
        (0x15, 0, 6, 0x6), (0x28, 0, 0, 0x6), (0x45, 23, 0, 0x1FFF), (0xB1, 0, 0, 0x0),
        (0x50, 0, 0, 0xD), (0x54, 0, 0, 0x12), (0x15, 18, 19, 0x2), (0x15, 0, 18, 0x11),
        (0x28, 0, 0, 0x6), (0x45, 16, 0, 0x1FFF), (0xB1, 0, 0, 0x0), (0x48, 0, 0, 0x2),
        (0x15, 12, 13, 0x35), (0x30, 0, 0, 0x0), (0x54, 0, 0, 0xF0), (0x15, 0, 10, 0x60),
        (0x30, 0, 0, 0x6), (0x15, 0, 3, 0x6), (0x30, 0, 0, 0x35), (0x54, 0, 0, 0x12),
        (0x15, 4, 0, 0x2), (0x30, 0, 0, 0x6), (0x15, 0, 3, 0x11), (0x28, 0, 0, 0x2A),
        (0x15, 0, 1, 0x35), (0x6, 0, 0, 0xFFFF), (0x6, 0, 0, 0x0),
    )
)  # fmt: skip
"""`START_FILTER` as libpcap compiles it for raw IP (a test checks they agree). Kept compiled
so the daemon does not load scapy and libpcap (about 24 MB) for one fixed filter."""
START_PROGRAM = (
    struct.pack("HBBI", 0x20, 0, 0, 0xFFFFF004)  # A = packet type (SKF_AD_OFF + SKF_AD_PKTTYPE)
    + struct.pack("HBBI", 0x15, 0, len(_START_COMPILED) // 8 - 1, PACKET_OUTGOING)  # else ret 0
    + _START_COMPILED
)
"""Outgoing packets only (the kernel drops others' SYNs and loopback's arriving copy), then
`START_FILTER`. libpcap has no `outbound` for raw IP, so the two instructions are written here."""
_SYN, _ACK = 0x02, 0x10
DNS_PORT = 53
WATCHED = frozenset((Transport.TCP, Transport.UDP))
"""Transports whose starts are watched (TCP connects; UDP for DNS queries, see `outgoing_start`)."""
NEW_PROCESSES = 32
"""How many of the newest processes of the socket's user are searched."""
_Decode = Callable[[int, bytes, float, str | None], PacketMeta | None]


@dataclass(frozen=True, slots=True)
class StartStats:
    """Counts since start: connection starts seen, attributed, and not (socket or owner gone)."""

    seen: int
    attributed: int
    missed: int


def outgoing_start(meta: PacketMeta | None) -> FlowKey | None:
    """The flow key (this host first) of a decoded connection start, else None: a TCP SYN
    without ACK, or a UDP datagram to port 53."""
    if meta is None:
        return None
    if meta.transport is Transport.TCP and meta.tcp_flags & (_SYN | _ACK) == _SYN:
        return FlowKey(Transport.TCP, meta.src, meta.dst)
    if meta.transport is Transport.UDP and meta.dst.port == DNS_PORT:
        return FlowKey(Transport.UDP, meta.src, meta.dst)
    return None


class ConnectionOwners:
    """Finds the process behind each outgoing TCP connection as it starts (see module doc)."""

    def __init__(
        self,
        *,
        reader: ProcessReader | None = None,
        proc_root: str = "/proc",
        keep: float = 600.0,
        max_kept: int = 8192,
        budget: float = 0.02,
        cap: float = 0.05,
    ) -> None:
        self._reader: ProcessReader = reader or PsutilReader()
        self._root = proc_root
        self.keep = keep
        self.max_kept = max_kept
        self.budget = budget
        """CPU seconds per second the wider /proc searches may use (0.02: 2% of a core)."""
        self.cap = cap
        """CPU seconds per second all of it may use; past it, starts are left to the samples."""
        self._window = (float("-inf"), 0.0)
        self._found: OrderedDict[FlowKey, tuple[ProcessRef, float]] = OrderedDict()
        self._recent: OrderedDict[int, None] = OrderedDict()
        """pids that opened connections lately, most recent last."""
        self._table: SocketTable | None = None
        self._procs: dict[int, tuple[bytes, ProcessRef]] = {}
        self._seen = self._attributed = self._missed = 0
        self._capture: LiveCapture | None = None
        self._diag: netlink.DiagSocket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    # ------------------------------------------------------------ the consumer's side

    def owner(self, key: FlowKey) -> ProcessRef | None:
        """The process that opened `key` (this host first), if its start was caught."""
        hit = self._found.get(key)
        return None if hit is None else hit[0]

    def hint(self, table: SocketTable) -> None:
        """The latest sample: its socket owners are the likeliest to connect next."""
        self._table = table

    def stats(self) -> StartStats:
        """What was seen and attributed so far."""
        return StartStats(self._seen, self._attributed, self._missed)

    # ------------------------------------------------------------ the thread

    def start(self) -> ConnectionOwners:
        """Open the SYN socket and the sock_diag socket, then start the thread.

        Raises `CaptureUnavailableError` (no CAP_NET_RAW) or `NetlinkUnavailableError`.
        """
        capture = LiveCapture(program=START_PROGRAM, ring=False, rcvbuf=1 << 20).open()
        try:
            self._diag = netlink.DiagSocket()
        except netlink.NetlinkUnavailableError:
            capture.stop()
            raise
        self._capture = capture
        self._thread = threading.Thread(target=self._run, name="netwatch-connects", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread and close both sockets."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
        if self._capture is not None:
            self._capture.stop()
        if self._diag is not None:
            self._diag.close()

    def _run(self) -> None:
        capture = self._capture
        assert capture is not None  # noqa: S101  # start() opened it
        sock = capture.packet_socket
        decode = PacketDecoder().decode_cooked
        while not self._stop.is_set():
            if self._over_budget(self.cap):
                # A connection storm: sleep out this second (the kernel drops what overflows
                # the socket buffer), then drop what queued; the samples take over meanwhile.
                self._stop.wait(max(0.0, 1.0 - (time.monotonic() - self._window[0])))
                self._drop_queued(sock)
                continue
            try:
                batch = self._gather(sock, decode)
            except OSError:
                return  # the socket was closed under us (stop)
            if batch:
                with contextlib.suppress(OSError):  # a failed lookup never ends the thread
                    self._resolve(batch)

    def _drop_queued(self, sock: socket.socket) -> None:
        """Read and discard every queued connection start, counting them as missed."""
        sock.settimeout(0.0)
        with contextlib.suppress(BlockingIOError, InterruptedError):
            for _ in range(1 << 16):
                sock.recv(1)
                self._seen += 1
                self._missed += 1

    def _gather(self, sock: socket.socket, decode: _Decode) -> list[FlowKey]:
        """Wait (up to 0.2 s) for a connection start, then take the ones already queued.

        No waiting for more: the socket must still be open when it is looked up.
        """
        batch: list[FlowKey] = []
        sock.settimeout(0.2)
        while True:
            try:
                data, addr = sock.recvfrom(256)
            except (TimeoutError, BlockingIOError):
                return batch
            if addr[2] == PACKET_OUTGOING:  # the filter keeps only these; kept as a guard
                key = outgoing_start(decode(addr[1], data, 0.0, addr[0]))
                if key is not None and key not in self._found:
                    batch.append(key)
            if len(batch) >= 64:
                return batch
            sock.settimeout(0.0)

    def _resolve(self, keys: list[FlowKey]) -> None:
        """Find the socket of each started connection, then the process holding it."""
        diag = self._diag
        assert diag is not None  # noqa: S101  # start() opened it
        self._seen += len(keys)
        wanted: dict[int, FlowKey] = {}
        uids: set[int] = set()
        for key in keys:
            rec = _lookup(diag, key)
            if rec is None or not rec.inode:
                self._missed += 1  # closed already, or another namespace's
                continue
            wanted[rec.inode] = key
            uids.add(rec.uid)
        if not wanted:
            return
        holders = find_holders(wanted, list(reversed(self._recent)), self._root)
        # Before the wider search: a socket whose fd was closed meanwhile has no holder left.
        left = {
            inode: key
            for inode, key in wanted.items()
            if inode not in holders and _still_held(diag, key, inode)
        }
        if left:
            holders.update(find_holders(left, self._candidates(uids), self._root))
        now = time.monotonic()
        for inode, key in wanted.items():
            pid = holders.get(inode)
            ref = self._process(pid) if pid is not None else None
            if pid is None or ref is None:
                self._missed += 1
                continue
            self._attributed += 1
            self._remember(key, ref, now)
            self._recent[pid] = None
            self._recent.move_to_end(pid)
            while len(self._recent) > 8:
                self._recent.popitem(last=False)

    def _remember(self, key: FlowKey, ref: ProcessRef, now: float) -> None:
        found = self._found
        found[key] = (ref, now)
        while found and (
            len(found) > self.max_kept or next(iter(found.values()))[1] < now - self.keep
        ):
            found.popitem(last=False)

    def _process(self, pid: int) -> ProcessRef | None:
        """Details of `pid`, read once per process (its /proc stat identity: name and start
        time, as `SocketOwners` keys them, changes on pid reuse and on exec)."""
        ident = stat_identity(self._root, pid)
        if ident is None:
            return None
        cached = self._procs.get(pid)
        if cached is not None and cached[0] == ident:
            return cached[1]
        ref = self._reader.read(pid)
        if ref is not None:
            if len(self._procs) > 4096:
                self._procs.clear()
            self._procs[pid] = (ident, ref)
        return ref

    def _candidates(self, uids: set[int]) -> Iterator[int]:
        """Who most likely holds a new connection, likeliest first (each pid once).

        After the processes that connected lately (searched first, by the caller): the newest
        processes of the socket's user that the last sample did not know (a command just
        started, like `curl`), then the owners in the last sample. Read lazily, and stopped
        once this second's CPU budget is spent (a connection storm is then left to the
        samples, and counted as missed).
        """
        tried = set(self._recent)  # searched already
        known = self._table_owner_pids()
        for pid in self._newest_pids_of(uids, NEW_PROCESSES):
            if pid not in known and pid not in tried:
                if self._over_budget(self.budget):
                    return
                tried.add(pid)
                yield pid
        for pid in known:
            if pid not in tried:
                if self._over_budget(self.budget):
                    return
                yield pid

    def _over_budget(self, share: float) -> bool:
        """Whether this thread used more than `share` of a core in the current second."""
        now = time.monotonic()
        spent = time.thread_time()
        if now - self._window[0] >= 1.0:
            self._window = (now, spent)
        return spent - self._window[1] > share

    def _table_owner_pids(self) -> frozenset[int]:
        """The pids owning sockets in the latest sample (computed once per sample)."""
        table = self._table
        return frozenset() if table is None else table.owner_pids()

    def _newest_pids_of(self, uids: set[int], limit: int) -> list[int]:
        """The `limit` highest pids (newest, until pids wrap) owned by one of `uids`."""
        try:
            pids = list_pids(self._root)
        except OSError:
            return []
        out = []
        for pid in reversed(pids):
            with contextlib.suppress(OSError):
                if os.stat(f"{self._root}/{pid}").st_uid in uids:
                    out.append(pid)
                    if len(out) >= limit:
                        break
        return out


def _lookup(diag: netlink.DiagSocket, key: FlowKey) -> netlink.DiagRecord | None:
    local, remote = key.local, key.remote
    if remote is None:
        return None
    proto = socket.IPPROTO_UDP if key.transport is Transport.UDP else socket.IPPROTO_TCP
    return diag.find(proto, (local.ip.packed, local.port), (remote.ip.packed, remote.port))


def _still_held(diag: netlink.DiagSocket, key: FlowKey, inode: int) -> bool:
    """Whether the socket is still open under the same inode (0 once its fd is closed)."""
    rec = _lookup(diag, key)
    return rec is not None and rec.inode == inode
