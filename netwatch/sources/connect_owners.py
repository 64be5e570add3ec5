"""Who opened a connection, found when its first packet leaves: for exchanges shorter than a tick.

The socket table is sampled once a second; a short exchange (the VPN Gate list fetch that sent
5 bytes and received 4 KB, a DNS-over-TCP query, a beacon) opens, talks and closes between two
samples, so capture sees its packets but no sample ever lists its socket or process. So, much
as OpenSnitch's /proc method does, connection starts are watched, the kernel is asked for that
one socket at once, and the process holding it is found before it closes.

Two more packet sockets with BPF filters take only outgoing TCP SYNs and DNS queries (the
kernel filters, so ordinary traffic costs nothing here; a program's own DNS lookup uses a UDP
socket that lives for one answer), read by a thread, SYNs first. Each start passes a gate
(`start_gate`): a repeat of a flow seen moments ago is skipped, and each conversation class has
its own token bucket, so a flood from one program spends its own share, not everyone's. For
each start let through it asks sock_diag for that one socket at once (`DiagSocket.lookup`: one
request, whatever the socket count), then reads fd links to find the holder of its inode: a
socket already named is named again at once; then the processes that connected lately, then
the processes that started lately (`proc_events`: the kernel's process-events connector, when
it may be subscribed to; without it, the socket user's processes the last sample did not know,
newest pid first, found by listing /proc), then the owners in the last sample. A holder that
has exited by the time its details are read is named from what process events read at its
exec. What it finds is kept by flow key for `keep` seconds for `CaptureFlows` to attribute the
flow with. The wider searches may use 2% of a core and all of it 5% (`budget`, `cap`; DNS
queries half of that): in a connection storm the rest is left to the samples and counted as
missed, per cause (`StartStats`). `bench/connects.py` measures it per mechanism. Incoming
connections need none of this: their listener is in every sample.

Where the kernel allows it (root, cgroup2, a kernel with CGROUP_BPF and a ring buffer map),
TCP connects are named by the cgroup socket hooks instead (`sources.cgroup_bpf`): a kernel
program records the caller's pid, name and 4-tuple inside `connect()`, and a thread of its own
(`_run_hooks`) turns each record into an owner, so a process that exits a millisecond later
is still named. The SYN socket is then not opened; DNS queries still come by their packet
socket (a UDP socket's local port is not bound yet when a resolver connects it, so a hook
there cannot give the flow's key), but their holder is read from the hooks' owner map by the
socket cookie sock_diag reports (`_udp_hooked`) instead of searched for in /proc. When the
hooks cannot be loaded, one log line says why and the SYN socket takes over.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import logging
import os
import select
import socket
import struct
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from netwatch.errors import CaptureUnavailableError
from netwatch.model import Endpoint, FlowKey, PacketMeta, ProcessRef, SocketTable, Transport
from netwatch.model.snapshot import STARTS_EVENTS, STARTS_HOOKS, STARTS_SAMPLES, STARTS_WATCH
from netwatch.sources import netlink
from netwatch.sources.capture import LiveCapture
from netwatch.sources.cgroup_bpf import CgroupHooks, HooksUnavailableError
from netwatch.sources.cgroup_bpf_records import ConnectRecord
from netwatch.sources.decode import PacketDecoder
from netwatch.sources.proc_events import ProcessEvents, ProcEventsUnavailableError
from netwatch.sources.processes import (
    ProcessReader,
    PsutilReader,
    find_holders,
    list_pids,
    stat_identity,
)
from netwatch.sources.start_gate import Cause, StartGate, Verdict
from netwatch.sources.waker import LONG_WAIT, Waker

PACKET_OUTGOING = 4
SYN_FILTER = (
    "(ip and tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn)"
    " or (ip6 and ip6[6] == 6 and ip6[53] & 0x12 == 0x02)"
)
"""Connection starts over TCP: a SYN without ACK (IPv6 without extension headers)."""
DNS_FILTER = "udp dst port 53"
"""DNS queries: a program's own lookups use a UDP socket that lives for one answer."""
_SYN_COMPILED = b"".join(
    struct.pack("HBBI", *insn)
    for insn in (
        (0x30, 0, 0, 0x0), (0x54, 0, 0, 0xF0), (0x15, 0, 8, 0x40), (0x30, 0, 0, 0x9),
        (0x15, 0, 15, 0x6), (0x28, 0, 0, 0x6), (0x45, 13, 0, 0x1FFF), (0xB1, 0, 0, 0x0),
        (0x50, 0, 0, 0xD), (0x54, 0, 0, 0x12), (0x15, 8, 9, 0x2), (0x30, 0, 0, 0x0),
        (0x54, 0, 0, 0xF0), (0x15, 0, 6, 0x60), (0x30, 0, 0, 0x6), (0x15, 0, 4, 0x6),
        (0x30, 0, 0, 0x35), (0x54, 0, 0, 0x12), (0x15, 0, 1, 0x2), (0x6, 0, 0, 0xFFFF),
        (0x6, 0, 0, 0x0),
    )
)  # fmt: skip
_DNS_COMPILED = b"".join(
    struct.pack("HBBI", *insn)
    for insn in (
        (0x30, 0, 0, 0x0), (0x54, 0, 0, 0xF0), (0x15, 0, 4, 0x60), (0x30, 0, 0, 0x6),
        (0x15, 0, 13, 0x11), (0x28, 0, 0, 0x2A), (0x15, 10, 11, 0x35), (0x30, 0, 0, 0x0),
        (0x54, 0, 0, 0xF0), (0x15, 0, 8, 0x40), (0x30, 0, 0, 0x9), (0x15, 0, 6, 0x11),
        (0x28, 0, 0, 0x6), (0x45, 4, 0, 0x1FFF), (0xB1, 0, 0, 0x0), (0x48, 0, 0, 0x2),
        (0x15, 0, 1, 0x35), (0x6, 0, 0, 0xFFFF), (0x6, 0, 0, 0x0),
    )
)  # fmt: skip
"""`SYN_FILTER` and `DNS_FILTER` as libpcap compiles them for raw IP (a test checks they
agree). Kept compiled so the daemon does not load scapy and libpcap (about 24 MB) for two
fixed filters. Two packet sockets, not one: each has its own receive buffer, so a flood of
DNS queries can fill only its own and never push out a SYN waiting to be named."""


def outgoing_program(compiled: bytes) -> bytes:
    """`compiled` (libpcap's, for raw IP) for outgoing packets only.

    libpcap has no `outbound` for raw IP, so the two instructions are written here: the packet
    type (the kernel drops others' SYNs and loopback's arriving copy), else the final `ret 0`.
    """
    return (
        struct.pack("HBBI", 0x20, 0, 0, 0xFFFFF004)  # A = packet type (SKF_AD_PKTTYPE)
        + struct.pack("HBBI", 0x15, 0, len(compiled) // 8 - 1, PACKET_OUTGOING)
        + compiled
    )


SYN_PROGRAM = outgoing_program(_SYN_COMPILED)
DNS_PROGRAM = outgoing_program(_DNS_COMPILED)
DNS_SHARE = 0.5
"""The part of the CPU cap that reading DNS queries may use; SYNs may use all of it."""
_SYN, _ACK = 0x02, 0x10
DNS_PORT = 53
WATCHED = frozenset((Transport.TCP, Transport.UDP))
"""Transports whose starts are watched (TCP connects; UDP for DNS queries, see `outgoing_start`)."""
NEW_PROCESSES = 32
"""How many of the newest processes of the socket's user are searched (without process events)."""
MECHANISM_HOOKS = STARTS_HOOKS
MECHANISM_EVENTS = STARTS_EVENTS
MECHANISM_STARTS = STARTS_WATCH
MECHANISM_SAMPLES = STARTS_SAMPLES
"""What names short connections, best first (`model.snapshot.STARTS_*`)."""
WATCHER_NICE = -10
"""The watcher's threads' nice value. A burst of 30 programs starting at once on two cores
would otherwise leave a nice-0 thread a thirtieth of the CPU, and the sockets it must look up
close while it waits; the thread caps its own CPU use (`cap`), so a high priority cannot let
it take more than that."""
HOOK_BATCH = 256
"""Records the hooks' thread takes per wake-up (the rest wait in the ring for the next)."""
HOOK_GATHER = 0.01
"""Seconds the hooks' thread lets records gather after a wake-up that found some. The kernel
wakes the thread for every record, and a wake-up (epoll, ring read, the GIL) cost about
70 us against 23 us for naming the record (`bench/connects.py` at 500 connects/s); the
first record of a quiet spell is still read at once, and a name arrives at most this much
later, far inside the collector's tick. The ring holds about 2,900 records."""
HOOK_REF_FRESH = 1.0
"""Seconds a process found for a record names the next records of the same pid and kernel
name without reading /proc again (an exec changes the name; most of a record's cost is that
read, so a program making hundreds of connections a second costs a tenth as much)."""
_Decode = Callable[[int, bytes, float, str | None], PacketMeta | None]
log = logging.getLogger(__name__)


@contextlib.contextmanager
def watcher_priority() -> Iterator[None]:
    """Threads started in the body run at `WATCHER_NICE` (nice is per thread on Linux, and
    inherited by the threads it starts); this thread gets its own back after.

    Needs CAP_SYS_NICE when entered (the daemon's collector enters it before it gives up its
    capabilities; going back to a higher nice needs none); without, nothing changes.
    """
    tid = threading.get_native_id()
    try:
        old = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(old, WATCHER_NICE))
    except OSError:
        yield
        return
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, tid, old)


@dataclass(frozen=True, slots=True)
class StartStats:
    """Counts since start: connection starts seen, attributed, and not, with why not."""

    seen: int
    attributed: int
    missed: int
    """All misses: the sum of the three causes below."""
    missed_budget: int = 0
    """Refused by their conversation's fair share, or the search's CPU budget ran out."""
    missed_gone: int = 0
    """The socket or its holder was gone when looked up (or in another namespace)."""
    missed_queue: int = 0
    """Dropped unread: queued while over the CPU cap, or dropped by the kernel."""
    mechanism: str = MECHANISM_STARTS
    """What names short connections (`MECHANISM_*`)."""

    def wire(self) -> list[int | str]:
        """As the collector sends it to the analyzer (`from_wire` reads it back)."""
        return [self.seen, self.attributed, self.missed, self.missed_budget,
                self.missed_gone, self.missed_queue, self.mechanism]  # fmt: skip

    @classmethod
    def from_wire(cls, items: Sequence[object]) -> StartStats:
        """Read `wire()` (an older collector sends the first three numbers only)."""
        nums = [int(n) for n in items[:6] if isinstance(n, int | float | str)]
        nums += [0] * (6 - len(nums))
        mech = items[6] if len(items) > 6 and isinstance(items[6], str) else MECHANISM_STARTS
        seen, named, missed, budget, gone, queue = nums[:6]
        return cls(seen, named, missed, budget, gone, queue, mech)


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


def start_ids(data: bytes) -> tuple[bytes, bytes] | None:
    """(flow identity, conversation class) of a raw IP packet, straight from its bytes: the
    protocol, addresses and ports; the class leaves out this host's address and port.

    Cheap enough to run on every datagram of a flood before anything is decoded or looked up
    (`start_gate.StartGate` takes both). None for what is not IPv4 or IPv6 with ports.
    """
    if not data:
        return None
    version = data[0] >> 4
    if version == 4:
        ihl = (data[0] & 0x0F) * 4
        if ihl < 20 or len(data) < ihl + 4:
            return None
        proto, dst, ports = data[9:10], data[16:20], data[ihl : ihl + 4]
        return proto + data[12:16] + dst + ports, proto + dst + ports[2:]
    if version == 6 and len(data) >= 44:
        proto, dst, ports = data[6:7], data[24:40], data[40:44]
        return proto + data[8:24] + dst + ports, proto + dst + ports[2:]
    return None


@functools.lru_cache(maxsize=8192)
def _endpoint(address: str, port: int) -> Endpoint:
    """A hooks record's endpoint, remembered: a connect storm repeats its remote endpoint
    and its few local addresses, and parsing the text is most of a record's cost."""
    return Endpoint(ipaddress.ip_address(address), port)


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
        gate: StartGate | None = None,
        events: ProcessEvents | None = None,
        hooks: CgroupHooks | None = None,
    ) -> None:
        self._reader: ProcessReader = reader or PsutilReader()
        self._root = proc_root
        self.keep = keep
        self.max_kept = max_kept
        self.budget = budget
        """CPU seconds per second the wider /proc searches may use (0.02: 2% of a core)."""
        self.cap = cap
        """CPU seconds per second all of it may use; past it, starts are left to the samples."""
        self.gate = gate or StartGate()
        """Repeats and fair shares per conversation, before any lookup."""
        self.events = events
        """Process events (the connector), when subscribed: new processes searched first,
        and remembered after they exit."""
        self._window = (float("-inf"), 0.0)
        self._found: OrderedDict[FlowKey, tuple[ProcessRef, float]] = OrderedDict()
        self._recent: OrderedDict[int, None] = OrderedDict()
        """pids that opened connections lately, most recent last."""
        self._inodes: OrderedDict[int, int] = OrderedDict()
        """Socket inode -> the pid found holding it: a socket that starts another flow (a
        UDP socket asking a second resolver) is named without a search."""
        self._table: SocketTable | None = None
        self._procs: dict[int, tuple[bytes, ProcessRef]] = {}
        self._seen = self._attributed = 0
        self._missed: dict[Cause, int] = dict.fromkeys(Cause, 0)
        self._cut = False
        """The last search stopped at the budget (its misses are the budget's, not gone)."""
        self._new: deque[tuple[FlowKey, ProcessRef]] = deque(maxlen=max_kept)
        """Owners found since `drain` last ran (the daemon's collector passes them on)."""
        self._syn: LiveCapture | None = None
        self._dns: LiveCapture | None = None
        self._dns_paused = False
        self._netns: int | None = None
        self._diag: netlink.DiagSocket | None = None
        self._thread: threading.Thread | None = None
        self._stop = Waker()
        self.hooks = hooks
        """The cgroup socket hooks, when loaded: they name TCP connects (see module doc)."""
        self._hooks_thread: threading.Thread | None = None
        self._hook_seen = self._hook_named = self._hook_gone = 0
        self._hook_refs: dict[tuple[int, str], tuple[ProcessRef, float]] = {}
        self.udp_hooked = 0
        """UDP starts named from the hooks' owner map (a part of `attributed`)."""
        self._hook_recent: deque[int] = deque(maxlen=8)
        """pids the hooks saw connect lately, newest last: searched first for a DNS query's
        socket, as `_recent` is (a deque: the hooks' thread appends, the other copies it)."""
        """(pid, kernel name) -> the process found for it and when (only the hooks' thread)."""
        self._lock = threading.Lock()
        """Guards `_found` and `_procs`, which both threads write."""

    # ------------------------------------------------------------ the consumer's side

    def owner(self, key: FlowKey) -> ProcessRef | None:
        """The process that opened `key` (this host first), if its start was caught."""
        hit = self._found.get(key)
        return None if hit is None else hit[0]

    def hint(self, table: SocketTable) -> None:
        """The latest sample: its socket owners are the likeliest to connect next."""
        self._table = table

    @property
    def mechanism(self) -> str:
        """What names short connections here (`MECHANISM_*`)."""
        if self.hooks is not None:
            return MECHANISM_HOOKS
        return MECHANISM_EVENTS if self.events is not None else MECHANISM_STARTS

    def stats(self) -> StartStats:
        """What was seen and attributed so far, and why the rest was missed."""
        missed = dict(self._missed)
        for capture in (self._syn, self._dns):
            if capture is not None:
                missed[Cause.QUEUE] += capture.stats().kernel_drops
        missed[Cause.GONE] += self._hook_gone
        if self.hooks is not None:  # records the ring had no room for: queue losses too
            missed[Cause.QUEUE] += self.hooks.dropped
        return StartStats(
            self._seen + self._hook_seen + missed[Cause.QUEUE] - self._missed[Cause.QUEUE],
            self._attributed + self._hook_named,
            sum(missed.values()),
            missed[Cause.BUDGET],
            missed[Cause.GONE],
            missed[Cause.QUEUE],
            self.mechanism,
        )

    def drain(self) -> list[tuple[FlowKey, ProcessRef]]:
        """The owners found since the last call (for a process that attributes elsewhere)."""
        out, new = [], self._new
        with contextlib.suppress(IndexError):  # deque ends are thread-safe: none is lost
            while True:
                out.append(new.popleft())
        return out

    # ------------------------------------------------------------ the thread

    def start(self, *, events: bool = True, hooks: bool = True) -> ConnectionOwners:
        """Load the cgroup socket hooks (when `hooks`, not given already, and allowed; else
        open the SYN socket), open the DNS socket and the sock_diag socket, subscribe to
        process events (when `events` and allowed; without them the search reads /proc),
        start the threads.

        Raises `CaptureUnavailableError` (no CAP_NET_RAW) or `NetlinkUnavailableError`; the
        hooks are closed then.
        """
        if hooks and self.hooks is None:
            self.hooks = open_hooks()
        try:
            syn = (
                None
                if self.hooks is not None
                else LiveCapture(program=SYN_PROGRAM, ring=False, rcvbuf=1 << 20).open()
            )
            try:
                dns = LiveCapture(program=DNS_PROGRAM, ring=False, rcvbuf=1 << 20).open()
            except CaptureUnavailableError:
                if syn is not None:
                    syn.stop()
                raise
        except CaptureUnavailableError:
            self._close_hooks()
            raise
        with contextlib.suppress(OSError):  # the namespace whose sockets it looks up
            self._netns = os.stat("/proc/thread-self/ns/net").st_ino
        try:
            self._diag = netlink.DiagSocket()
        except netlink.NetlinkUnavailableError:
            if syn is not None:
                syn.stop()
            dns.stop()
            self._close_hooks()
            raise
        self._syn, self._dns = syn, dns
        with watcher_priority():
            if events and self.events is None:
                with contextlib.suppress(ProcEventsUnavailableError):
                    proc = ProcessEvents(proc_root=self._root)
                    self.events = proc.start()
            self._thread = threading.Thread(target=self._run, name="netwatch-connects", daemon=True)
            self._thread.start()
            if self.hooks is not None:
                self._hooks_thread = threading.Thread(
                    target=self._run_hooks, name="netwatch-hooks", daemon=True
                )
                self._hooks_thread.start()
        return self

    def _close_hooks(self) -> None:
        if self.hooks is not None:
            self.hooks.close()
            self.hooks = None

    def stop(self) -> None:
        """Stop the threads and close the sockets."""
        self._stop.set()
        for thread in (self._thread, self._hooks_thread):
            if thread is not None:
                thread.join(2.0)
        if self.hooks is not None:
            self.hooks.close()
        for capture in (self._syn, self._dns):
            if capture is not None:
                capture.stop()
        if self._diag is not None:
            self._diag.close()
        if self.events is not None:
            self.events.stop()

    def _run(self) -> None:
        assert self._dns is not None  # noqa: S101  # start() opened it
        dns = self._dns.packet_socket
        syn = self._syn.packet_socket if self._syn is not None else None
        decode = PacketDecoder().decode_cooked
        while not self._stop.is_set():
            if self._over_budget(self.cap):
                # A connection storm: sleep out this second (the kernel drops what overflows
                # the socket buffers), then drop what queued; the samples take over meanwhile.
                self._stop.wait(max(0.0, 1.0 - (time.monotonic() - self._window[0])))
                if syn is not None:
                    self._drop_queued(syn)
                self._drop_queued(dns)
                self._dns_paused = False
                continue
            if self._dns_paused and not self._over_budget(0.0):
                self._drop_queued(dns)  # a new second: what waited is stale
                self._dns_paused = False
            if not self._dns_paused and self._over_budget(self.cap * DNS_SHARE):
                self._dns_paused = True  # DNS queries had their share: SYNs only till then
            socks = [] if syn is None else [syn]
            if not self._dns_paused:
                socks.append(dns)
            if not socks:  # DNS had its share and the hooks take TCP: wait for a new second
                self._stop.wait(max(0.0, 1.0 - (time.monotonic() - self._window[0])))
                continue
            # Paused DNS resumes with the next second: wake for it, else sleep till a start.
            wake = 1.0 - (time.monotonic() - self._window[0]) if self._dns_paused else LONG_WAIT
            try:
                batch = self._gather(socks, decode, max(0.0, wake))
            except (OSError, ValueError):
                return  # a socket was closed under us (stop)
            if batch:
                with contextlib.suppress(OSError):  # a failed lookup never ends the thread
                    self._resolve(batch)

    def _drop_queued(self, sock: socket.socket) -> None:
        """Read and discard every queued connection start, counting them as missed."""
        sock.settimeout(0.0)
        with contextlib.suppress(BlockingIOError, InterruptedError, OSError):
            for _ in range(1 << 16):
                sock.recv(1)
                self._seen += 1
                self._missed[Cause.QUEUE] += 1

    def _gather(self, socks: list[socket.socket], decode: _Decode, timeout: float) -> list[FlowKey]:
        """Wait (up to `timeout`, or until stopped) for a connection start, then take the
        ones already queued, SYNs first; each passes the gate (repeats and fair shares)
        before it is decoded.

        No waiting for more: the socket must still be open when it is looked up.
        """
        batch: list[FlowKey] = []
        watched: list[Any] = [*socks, self._stop]
        ready = select.select(watched, [], [], timeout)[0]
        for sock in socks:  # the SYN socket first
            if sock not in ready:
                continue
            sock.settimeout(0.0)
            for _ in range(256):
                try:
                    data, addr = sock.recvfrom(256)
                except (BlockingIOError, InterruptedError):
                    break
                key = self._take(data, addr, decode)
                if key is not None:
                    batch.append(key)
                    if len(batch) >= 64:
                        return batch
        return batch

    def _take(self, data: bytes, addr: tuple[Any, ...], decode: _Decode) -> FlowKey | None:
        """The flow key of a start to look up, or None (not a start, a repeat, refused)."""
        if addr[2] != PACKET_OUTGOING:  # the filter keeps only these; kept as a guard
            return None
        ids = start_ids(data)
        if ids is None:
            return None
        verdict = self.gate.admit(ids[0], ids[1], time.monotonic())
        if verdict is Verdict.REPEAT:
            return None
        self._seen += 1
        if verdict is Verdict.REFUSED:
            self._missed[Cause.BUDGET] += 1
            return None
        key = outgoing_start(decode(addr[1], data, 0.0, addr[0]))
        if key is None or key in self._found:
            self._seen -= 1  # not a start after all, or one already named
            return None
        return key

    def _resolve(self, keys: list[FlowKey]) -> None:
        """Find the socket of each started connection, then the process holding it."""
        diag = self._diag
        assert diag is not None  # noqa: S101  # start() opened it
        wanted: dict[int, FlowKey] = {}
        uids: set[int] = set()
        for key in keys:
            rec = _lookup(diag, key)
            if rec is not None and self._udp_hooked(key, rec):
                continue
            if rec is None or not rec.inode:
                self._missed[Cause.GONE] += 1  # closed already, or another namespace's
                continue
            wanted[rec.inode] = key
            uids.add(rec.uid)
        if not wanted:
            return
        holders = {i: self._inodes[i] for i in wanted if i in self._inodes}
        fresh = self.events.fresh(netns=self._netns) if self.events is not None else []
        # Who connected lately, then (with process events) the processes started lately in
        # this namespace: a burst of short-lived commands is found here, before any budget.
        hooked = list(self._hook_recent)  # one C call: safe against the hooks' appends
        quick = list(
            dict.fromkeys([*reversed(self._recent), *reversed(hooked), *fresh[:NEW_PROCESSES]])
        )
        holders.update(find_holders(wanted.keys() - holders.keys(), quick, self._root))
        # Before the wider search: a socket whose fd was closed meanwhile has no holder left.
        left = {
            inode: key
            for inode, key in wanted.items()
            if inode not in holders and _still_held(diag, key, inode)
        }
        self._cut = False
        if left:
            more = self._candidates(uids, set(quick), fresh[NEW_PROCESSES:])
            holders.update(find_holders(left, more, self._root))
        now = time.monotonic()
        for inode, key in wanted.items():
            pid = holders.get(inode)
            ref = self._process(pid) if pid is not None else None
            if pid is None or ref is None:
                cut = self._cut and inode in left
                self._missed[Cause.BUDGET if cut else Cause.GONE] += 1
                continue
            self._attributed += 1
            self._remember(key, ref, now)
            self._inodes[inode] = pid
            while len(self._inodes) > self.max_kept:
                self._inodes.popitem(last=False)
            self._recent[pid] = None
            self._recent.move_to_end(pid)
            while len(self._recent) > 8:
                self._recent.popitem(last=False)

    def _run_hooks(self) -> None:
        """Turn the hooks' records into owners as they come (a thread of its own: a DNS flood
        that puts the packet thread to sleep does not delay them), within the CPU cap."""
        hooks = self.hooks
        assert hooks is not None  # noqa: S101  # start() loaded them
        window = (float("-inf"), 0.0)
        while not self._stop.is_set():
            now, spent = time.monotonic(), time.thread_time()
            if now - window[0] >= 1.0:
                window = (now, spent)
            elif spent - window[1] > self.cap:
                # A connect storm: the ring keeps what it can hold until the next second.
                self._stop.wait(max(0.0, 1.0 - (now - window[0])))
                continue
            if not hooks.wait(LONG_WAIT, self._stop):
                continue
            taken = 0
            with contextlib.suppress(OSError):  # a failed read never ends the thread
                for record in hooks.read(HOOK_BATCH):
                    taken += 1
                    self._take_record(record)
            if taken:
                self._stop.wait(HOOK_GATHER)

    def _take_record(self, record: ConnectRecord) -> None:
        """Remember the owner of one connect the hooks saw."""
        self._hook_seen += 1
        try:
            key = FlowKey(
                Transport.TCP,
                _endpoint(*record.local),
                _endpoint(*record.remote),
            )
        except ValueError:
            self._hook_gone += 1
            return
        now = time.monotonic()
        hit = self._hook_refs.get((record.pid, record.comm))
        if hit is not None and now - hit[1] < HOOK_REF_FRESH:
            self._hook_named += 1
            self._remember(key, hit[0], now)
            return
        ref = self._process(record.pid)
        if ref is None:
            # Exited before it could be read, and process events did not see it start (not
            # subscribed, or it started before them): the kernel's name for it is all there is.
            ref = ProcessRef(record.pid, 0.0, record.comm)
        self._hook_named += 1
        if len(self._hook_refs) > 4096:
            self._hook_refs.clear()
        self._hook_refs[(record.pid, record.comm)] = (ref, now)
        self._remember(key, ref, now)
        if record.pid not in self._hook_recent:
            self._hook_recent.append(record.pid)

    def _udp_hooked(self, key: FlowKey, rec: netlink.DiagRecord) -> bool:
        """Name a UDP start from the hooks' owner map, by its socket's cookie (the last 8
        bytes of sock_diag's socket id): no /proc search. False when the hooks did not
        see that socket (or do not run)."""
        hooks = self.hooks
        if hooks is None or key.transport is not Transport.UDP:
            return False
        hit = hooks.udp_owner(int.from_bytes(rec.ident[-8:], "little"))
        if hit is None:
            return False
        ref = self._process(hit[0]) or ProcessRef(hit[0], 0.0, hit[1])
        self._attributed += 1
        self.udp_hooked += 1
        self._remember(key, ref, time.monotonic())
        return True

    def _remember(self, key: FlowKey, ref: ProcessRef, now: float) -> None:
        with self._lock:
            found = self._found
            found[key] = (ref, now)
            self._new.append((key, ref))
            while found and (
                len(found) > self.max_kept or next(iter(found.values()))[1] < now - self.keep
            ):
                found.popitem(last=False)

    def _process(self, pid: int) -> ProcessRef | None:
        """Details of `pid`, read once per process (its /proc stat identity: name and start
        time, as `SocketOwners` keys them, changes on pid reuse and on exec); a process that
        exited since it was found is named from what process events read when it started."""
        ident = stat_identity(self._root, pid)
        if self.events is not None:
            ref = self.events.remembered(pid, ident)
            if ref is not None:
                return ref
        if ident is None:
            return None
        cached = self._procs.get(pid)
        if cached is not None and cached[0] == ident:
            return cached[1]
        ref = self._reader.read(pid)
        if ref is not None:
            with self._lock:
                if len(self._procs) > 4096:
                    self._procs.clear()
                self._procs[pid] = (ident, ref)
        return ref

    def _candidates(self, uids: set[int], tried: set[int], fresh: list[int]) -> Iterator[int]:
        """Who else may hold a new connection, likeliest first (each pid once).

        After the processes searched first by the caller (`tried`): the rest of the processes
        started lately (`fresh`, from process events), or without process events the newest
        processes of the socket's user that the last sample did not know (a command just
        started, like `curl`); then the owners in the last sample. Read lazily, and stopped
        once this second's CPU budget is spent (a connection storm is then left to the
        samples, and counted as missed for the budget).
        """
        known = self._table_owner_pids()
        newest = self._newest_pids_of(uids, NEW_PROCESSES) if self.events is None else fresh
        for pid in newest:
            if pid not in known and pid not in tried:
                if self._over_budget(self.budget):
                    self._cut = True
                    return
                tried.add(pid)
                yield pid
        for pid in known:
            if pid not in tried:
                if self._over_budget(self.budget):
                    self._cut = True
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


def open_hooks() -> CgroupHooks | None:
    """The cgroup socket hooks, loaded and attached; None (and one log line saying why) when
    this machine or this process cannot have them. Needs CAP_BPF and CAP_NET_ADMIN (or
    root): the daemon's collector calls it before it gives up its capabilities."""
    try:
        return CgroupHooks().open()
    except HooksUnavailableError as exc:
        log.info("%s; TCP connects are named by the start watcher instead", exc)
        return None
