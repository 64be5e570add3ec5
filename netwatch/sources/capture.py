"""Live packet capture: an AF_PACKET socket read in its own thread into a bounded queue.

One cooked (`SOCK_DGRAM`) packet socket sees every interface, or the one asked for. Cooked
mode hands over the IP packet without its link header, so Ethernet, loopback, tun (OpenVPN)
and wireguard-go interfaces all look alike; a BPF filter is compiled by scapy/libpcap for
raw IP and attached to the socket. Frames arrive through a TPACKET_V3 mmap ring
(`sources.packet_ring`, as libpcap does; plain `recvfrom` if the kernel lacks it). The reader
thread does as little as possible (take the frame, append it) so the ring drains quickly;
frames are decoded by the consumer (`packets()`) with the struct parser pcap files use.

scapy's own `L2ListenSocket` is not used: it binds to one interface (the default route's
when none is named), and its `recv` dissects every frame with scapy layers, which
`bench/capture.py` measures at more than ten times the cost of the struct parser.

Each frame keeps the packet socket's `sll_pkttype` and `sll_ifindex` (`PacketMeta.pkttype`,
`ifindex`): a routed packet is seen arriving on one interface and leaving by another, and the
flow table counts it once from them (`flows.table`).

Nothing is lost silently: the kernel's drop count (PACKET_STATISTICS) and the frames turned
away because the queue was full are both counted and reported by `stats()`, as is the reason
if the reader thread had to stop (the interface went away). Without
CAP_NET_RAW the socket cannot be opened and `CaptureUnavailableError` says what still works.
"""

from __future__ import annotations

import collections
import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import psutil

from netwatch.errors import CaptureUnavailableError, UsageError
from netwatch.model import IPAddress, PacketMeta, parse_ip
from netwatch.sources.decode import PacketDecoder
from netwatch.sources.packet_ring import RETIRE_MS, Frame, PacketRing
from netwatch.sources.privileges import FULL_VIEW_HINT
from netwatch.sources.socket_filter import attach
from netwatch.sources.waker import LONG_WAIT, Waker

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_STATISTICS = 6
SO_RCVBUFFORCE = 33
ARPHRD_LOOPBACK = 772
PACKET_OUTGOING = 4
_SNAPLEN = 65535
_RCVBUF = 32 << 20
_IDLE_WAIT = 0.2
"""Seconds the reader waits for a frame before checking whether to stop."""

WITHOUT_CAPTURE = (
    "processes, addresses and TCP byte counts still come from the socket table; "
    "protocol labels, UDP byte counts and DNS names need capture"
)
"""What still works when capture is unavailable, for messages and the status line."""


@dataclass(frozen=True, slots=True)
class CaptureStats:
    """Counts since capture started; drops are never hidden."""

    frames: int
    kernel_drops: int
    """Frames the kernel dropped because the socket buffer was full."""
    queue_drops: int
    """Frames received but turned away because the consumer fell behind (queue full)."""
    queued: int
    error: str | None = None
    """Why the reader thread stopped early (e.g. the interface went away), if it did."""


def compile_bpf(expression: str) -> bytes:
    """Compile a tcpdump-style filter for raw IP frames into BPF instructions (8 bytes each).

    libpcap does the compiling (through scapy, which loads it); a filter that does not
    compile raises `UsageError` with libpcap's message.
    """
    import ctypes

    from scapy.arch.common import compile_filter
    from scapy.error import Scapy_Exception

    try:
        program = compile_filter(expression, linktype=101)
    except (Scapy_Exception, ImportError, OSError) as exc:
        raise UsageError(f"bad capture filter {expression!r}: {exc}") from None
    return ctypes.string_at(program.bf_insns, int(program.bf_len) * 8)


class LiveCapture:
    """Captures on `interface` (None: every interface) into a queue of at most `queue_size`.

    `start()` opens the socket in the caller's thread, so privilege and interface errors are
    raised there; the reader thread starts only when the socket is ready.
    """

    def __init__(
        self,
        interface: str | None = None,
        bpf: str | None = None,
        queue_size: int = 200_000,
        rcvbuf: int = _RCVBUF,
        ring: bool = True,
        ring_block_size: int = 1 << 20,
        ring_blocks: int = 32,
        program: bytes | None = None,
    ) -> None:
        self.interface = interface
        self.program = program
        """A BPF program already compiled (8 bytes an instruction), used instead of `bpf`."""
        self.rcvbuf = rcvbuf
        self.use_ring = ring
        self._ring_shape = (ring_block_size, ring_blocks)
        self._ring: PacketRing | None = None
        self.bpf = bpf
        self.queue_size = queue_size
        self._queue: collections.deque[tuple[float, int, bytes, str, int, int]] = (
            collections.deque()
        )
        """(time, ethertype, IP bytes, interface name, packet type, interface index)."""
        self._decoder = PacketDecoder()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = Waker()
        self._frames = self._queue_drops = self._kernel_drops = 0
        self._stats_lock = threading.Lock()
        self._error: str | None = None
        self._idle_at = float("-inf")
        """When the reader last found nothing to read (monotonic clock); see `settle()`."""

    def open(self) -> LiveCapture:
        """Open the packet socket without reading it yet (the kernel starts queueing)."""
        if self._sock is None:
            self._sock = self._open()
            if self.use_ring:
                try:
                    self._ring = PacketRing(self._sock, *self._ring_shape)
                except OSError:  # no TPACKET_V3 (old kernel): plain reads still work
                    self._ring = None
        return self

    @property
    def packet_socket(self) -> socket.socket:
        """The open packet socket, for a caller that reads it in a thread of its own."""
        if self._sock is None:
            raise RuntimeError("LiveCapture.open() first")
        return self._sock

    @property
    def mode(self) -> str:
        """`ring` (TPACKET_V3 mmap) or `recv` (one system call per frame)."""
        return "ring" if self._ring is not None else "recv"

    def start(self) -> LiveCapture:
        """Open the packet socket (if not yet open) and start the reader thread."""
        self.open()
        target = self._run if self._ring is None else self._run_ring
        self._thread = threading.Thread(
            target=self._guarded, args=(target,), name="netwatch-capture", daemon=True
        )
        self._thread.start()
        return self

    def _open(self) -> socket.socket:
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
        except PermissionError:
            raise CaptureUnavailableError(
                f"packet capture needs root or CAP_NET_RAW ({FULL_VIEW_HINT}); {WITHOUT_CAPTURE}"
            ) from None
        except OSError as exc:
            raise CaptureUnavailableError(
                f"cannot open a packet socket: {exc.strerror or exc}; {WITHOUT_CAPTURE}"
            ) from None
        try:
            program = self.program or (compile_bpf(self.bpf) if self.bpf else None)
            if program:
                attach(sock, program)
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, self.rcvbuf)
            except OSError:  # without CAP_NET_ADMIN the buffer is capped by rmem_max
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
            if self.interface:
                try:
                    sock.bind((self.interface, ETH_P_ALL))
                except OSError:
                    raise CaptureUnavailableError(
                        f"no network interface named {self.interface!r}"
                    ) from None
            _flush(sock)
            sock.settimeout(_IDLE_WAIT)
        except BaseException:
            sock.close()
            raise
        return sock

    def _guarded(self, loop: Callable[[], None]) -> None:
        """Run the reader loop; an OS error ends capture and is kept for `stats()`."""
        try:
            loop()
        except OSError as exc:
            self._error = f"capture stopped: {exc.strerror or exc}"

    def _run(self) -> None:
        sock = self._sock
        assert sock is not None  # noqa: S101  # start() opened it
        queue, limit, stop = self._queue, self.queue_size, self._stop
        recv = sock.recvfrom
        clock = time.time
        only = self.interface
        indexes: dict[str, int] = {}
        while not stop.is_set():
            try:
                data, addr = recv(_SNAPLEN)
            except TimeoutError:
                self._idle_at = time.monotonic()
                continue
            except OSError:
                if stop.is_set():
                    return
                raise
            # Loopback shows each packet twice (leaving and arriving); keep the arrival.
            if addr[2] == PACKET_OUTGOING and addr[3] == ARPHRD_LOOPBACK:
                continue
            if only is not None and addr[0] != only:  # queued before bind() took effect
                continue
            self._frames += 1
            if len(queue) >= limit:
                self._queue_drops += 1
                continue
            name = addr[0]
            index = indexes.get(name)
            if index is None:
                try:
                    index = socket.if_nametoindex(name)
                except OSError:
                    index = 0
                indexes[name] = index
            queue.append((clock(), addr[1], data, name, addr[2], index))

    def _run_ring(self) -> None:
        ring = self._ring
        assert ring is not None  # noqa: S101  # start() chose this loop because of it
        queue, limit, stop = self._queue, self.queue_size, self._stop
        only = None if self.interface is None else socket.if_nametoindex(self.interface)
        names: dict[int, str] = {}

        def handle(frame: Frame) -> None:
            ts, ethertype, ifindex, pkttype, hatype, data = frame
            if pkttype == PACKET_OUTGOING and hatype == ARPHRD_LOOPBACK:
                return
            if only is not None and ifindex != only:
                return
            self._frames += 1
            if len(queue) >= limit:
                self._queue_drops += 1
                return
            name = names.get(ifindex)
            if name is None:
                try:
                    name = socket.if_indextoname(ifindex)
                except OSError:
                    name = str(ifindex)
                names[ifindex] = name
            queue.append((ts, ethertype, data, name, pkttype, ifindex))

        while not stop.is_set():
            if not ring.read(handle, LONG_WAIT, stop):
                self._idle_at = time.monotonic()

    def settle(self, timeout: float = 1.0) -> bool:
        """Wait until every frame the kernel took before this call is in the queue.

        Why: the ring hands a block over only when it is full or `RETIRE_MS` after its first
        frame, so the packets of the last few tens of milliseconds are still in the kernel's
        hands; a final snapshot taken at stop would miss them (a whole VPN handshake fits in
        that window on a fast link). Returns False if the reader did not catch up in time.
        """
        thread = self._thread
        if thread is None or not thread.is_alive():
            return False
        if self._ring is not None:
            time.sleep(2 * RETIRE_MS / 1000)  # the open block is retired by now (2x: timer slack)
        mark = time.monotonic()
        self._stop.nudge()  # the ring's reader sleeps until a block or this
        deadline = mark + timeout
        while self._idle_at <= mark:  # a read that found nothing, begun after `mark`
            if time.monotonic() > deadline or not thread.is_alive():
                return False
            time.sleep(0.005)
        return True

    def packets(self, limit: int | None = None) -> list[PacketMeta]:
        """Decode and return what is queued (at most `limit` frames), oldest first."""
        queue, decode = self._queue, self._decoder.decode_cooked
        out: list[PacketMeta] = []
        n = len(queue) if limit is None else min(limit, len(queue))
        for _ in range(n):
            ts, ethertype, data, ifname, pkttype, ifindex = queue.popleft()
            meta = decode(ethertype, data, ts, ifname, pkttype, ifindex)
            if meta is not None:
                out.append(meta)
        return out

    def stats(self) -> CaptureStats:
        """Counts so far, with the kernel's drops read (and reset) from the socket."""
        with self._stats_lock:
            sock = self._sock
            if sock is not None and sock.fileno() >= 0:
                with contextlib.suppress(OSError):
                    # tpacket_stats (recv) or tpacket_stats_v3 (ring): drops are the 2nd field.
                    size = 8 if self._ring is None else 12
                    raw = sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, size)
                    self._kernel_drops += struct.unpack_from("II", raw)[1]
            return CaptureStats(
                frames=self._frames,
                kernel_drops=self._kernel_drops,
                queue_drops=self._queue_drops,
                queued=len(self._queue),
                error=self._error,
            )

    def stop(self) -> None:
        """Stop the reader thread and close the socket (the last kernel drops are kept)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
        self.stats()
        if self._ring is not None:
            self._ring.close()
        if self._sock is not None:
            self._sock.close()

    def __enter__(self) -> LiveCapture:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _flush(sock: socket.socket) -> None:
    """Discard frames queued before the filter and the bind took effect (libpcap does too)."""
    sock.setblocking(False)
    with contextlib.suppress(BlockingIOError, InterruptedError):
        for _ in range(1 << 20):
            sock.recv(1)


NETLINK_ROUTE = 0
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV6_IFADDR = 0x100


class AddressWatch:
    """This namespace's addresses (`local_addresses`), read again only when the kernel says
    an address came or went.

    Capture's flow table must know a new address within a tick (a tunnel coming up), and
    reading them every second cost 0.2 ms of an idle daemon's second (psutil's getifaddrs
    and parsing). A route netlink socket subscribed to the address groups gets a message
    for each change; each call reads that socket without blocking (one system call) and
    reads the addresses again only if something arrived, or if messages were lost
    (ENOBUFS). Subscribing needs no privilege. Without the socket every call reads them.
    """

    def __init__(self, read: Callable[[], frozenset[IPAddress]] | None = None) -> None:
        self._read = read or local_addresses
        self._addrs: frozenset[IPAddress] | None = None
        self._sock: socket.socket | None = None
        flags = socket.SOCK_RAW | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC
        try:  # subscribed before the first read, so no change falls between the two
            sock = socket.socket(socket.AF_NETLINK, flags, NETLINK_ROUTE)
        except OSError:
            return
        try:
            sock.bind((0, RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR))
        except OSError:
            sock.close()
            return
        self._sock = sock

    def __call__(self) -> frozenset[IPAddress]:
        """The addresses now."""
        if self._addrs is None or self._changed():
            self._addrs = self._read()
        return self._addrs

    def _changed(self) -> bool:
        """Whether the kernel reported an address change since the last call (drained)."""
        sock = self._sock
        if sock is None:
            return True
        changed = False
        for _ in range(4096):  # bounded: a flood of changes is one re-read either way
            try:
                if not sock.recv(65536):
                    return changed
            except (BlockingIOError, InterruptedError):
                return changed
            except OSError:  # ENOBUFS: changes were lost, so read them all again
                return True
            changed = True
        return True

    def close(self) -> None:
        """Close the netlink socket (calls then read the addresses every time)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def local_addresses() -> frozenset[IPAddress]:
    """Every address configured on this host's (namespace's) interfaces."""
    out: set[IPAddress] = set()
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            if a.family in (socket.AF_INET, socket.AF_INET6):
                with contextlib.suppress(ValueError):
                    out.add(parse_ip(a.address.split("%", 1)[0]))
    return frozenset(out)
