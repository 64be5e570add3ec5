"""Process starts and ends from the kernel's process-events connector, remembered for a while.

A command like `curl` can connect, send and exit between two socket samples, and even before
the connection-start watcher has searched /proc for the socket's holder: the holder is found
but is gone before its name is read, or the search never thinks of the new pid. The kernel's
process-events connector (`NETLINK_CONNECTOR`, group `CN_IDX_PROC`; linux/cn_proc.h) sends a
message for each fork, exec and exit, with the pid, as it happens and without kprobes or a
compiler. So, on exec, the new program's name, exe, command line, user and start time are read
at once (usually within a millisecond, before a short-lived process is gone) and kept for
`keep` seconds after it exits; the start watcher searches the newest of these processes first
and names a holder that has exited since from this memory.

The connector also reports every thread that starts or ends, and a server with a thread per
connection makes two such events per connection: a socket filter (`thread_filter`) drops them,
and every other kind of event, in the kernel, so they never wake the thread.

Subscribing needs CAP_NET_ADMIN in the initial user namespace (the kernel's
`cn_proc_mcast_ctl`), which the daemon's collector keeps. Reading on exec has its own CPU
budget: past it (a fork bomb, a build), new processes are still listed as new, and their
details are read only if the watcher asks for them.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import struct
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import psutil

from netwatch.model import ProcessRef
from netwatch.sources.processes import ProcessReader, stat_identity, user_name
from netwatch.sources.socket_filter import (
    DROP,
    JEQ_K,
    JEQ_X,
    KEEP,
    LD_W_ABS,
    RET_K,
    TAX,
    attach,
    host_word,
    insn,
)
from netwatch.sources.waker import LONG_WAIT, Waker

NETLINK_CONNECTOR = 11
CN_IDX_PROC = 1
CN_VAL_PROC = 1
PROC_CN_MCAST_LISTEN = 1
NLMSG_DONE = 3
PROC_EVENT_FORK = 0x00000001
PROC_EVENT_EXEC = 0x00000002
PROC_EVENT_EXIT = 0x80000000
_NLMSG = struct.Struct("=IHHII")
_CN_MSG = struct.Struct("=IIIIHH")
_EVENT_HEAD = struct.Struct("=IIQ")
_TWO = struct.Struct("=II")
_FOUR = struct.Struct("=IIII")


class ExecReader:
    """Reads a new process's details straight from /proc, as `PsutilReader` would give them.

    Called for every exec on the machine, so it reads the four files it needs and nothing
    else (a third of psutil's cost): the name psutil gives (`comm`, or the command's base name
    when `comm` is cut at 15 characters), the exe link, the command line, the real user and
    the start time on psutil's clock (boot time plus start ticks), so a process read here and
    one read by the socket sampler compare equal.
    """

    def __init__(self, proc_root: str = "/proc") -> None:
        self._root = proc_root
        self._users: dict[int, str | None] = {}
        self._ticks = os.sysconf("SC_CLK_TCK")
        self._boot = psutil.boot_time()

    def read(self, pid: int) -> ProcessRef | None:
        """The process's details; None when it is gone or unreadable."""
        base = f"{self._root}/{pid}"
        try:
            with open(f"{base}/stat", "rb") as fh:
                stat = fh.read()
            with open(f"{base}/status", "rb") as fh:
                status = fh.read()
            with open(f"{base}/cmdline", "rb") as fh:
                raw = fh.read()
        except OSError:
            return None
        close = stat.rfind(b")")
        fields = stat[close + 2 :].split()
        uid_at = status.find(b"\nUid:")
        if close < 0 or len(fields) < 20 or uid_at < 0:
            return None
        name = os.fsdecode(stat[stat.find(b"(") + 1 : close])
        cmdline = tuple(os.fsdecode(a) for a in raw.rstrip(b"\0").split(b"\0")) if raw else ()
        if len(name) >= 15 and cmdline:
            longer = os.path.basename(cmdline[0])
            if longer.startswith(name):
                name = longer
        try:
            exe: str | None = os.readlink(f"{base}/exe")
        except OSError:
            exe = None
        if exe and exe.endswith(" (deleted)") and not os.path.exists(exe):
            exe = exe[: -len(" (deleted)")]
        uid = int(status[uid_at + 6 :].split(None, 1)[0])
        return ProcessRef(
            pid=pid,
            create_time=int(fields[19]) / self._ticks + self._boot,
            name=name,
            exe=exe or None,
            cmdline=cmdline,
            user=self._user(uid),
            ppid=int(fields[1]),
        )

    def _user(self, uid: int) -> str | None:
        return user_name(uid, self._users)


class ProcEventsUnavailableError(OSError):
    """The connector cannot be subscribed to (no CAP_NET_ADMIN, or not in the host's namespaces)."""


@dataclass(frozen=True, slots=True)
class ProcEvent:
    """One fork, exec or exit of a process (threads are left out)."""

    kind: str
    """`fork`, `exec` or `exit`."""
    pid: int
    """The process (thread-group id): the child for a fork."""
    parent: int | None = None
    """The parent process, for a fork."""
    timestamp_ns: int = 0
    """The kernel's monotonic time of the event."""


def listen_message(pid: int = 0) -> bytes:
    """The netlink message that subscribes this socket to process events."""
    payload = struct.pack("=I", PROC_CN_MCAST_LISTEN)
    cn = _CN_MSG.pack(CN_IDX_PROC, CN_VAL_PROC, 0, 0, len(payload), 0) + payload
    return _NLMSG.pack(_NLMSG.size + len(cn), NLMSG_DONE, 0, 0, pid) + cn


def parse_events(data: bytes) -> list[ProcEvent]:
    """Every process fork, exec and exit in one datagram from the connector.

    Anything else (thread creation, other event kinds, other connector ids, truncated or
    inconsistent lengths) is skipped; nothing here raises on bad input.
    """
    out: list[ProcEvent] = []
    off = 0
    while off + _NLMSG.size <= len(data):
        length = _NLMSG.unpack_from(data, off)[0]
        if length < _NLMSG.size or off + length > len(data):
            break
        body = off + _NLMSG.size
        event = _parse_cn(data[body : off + length])
        if event is not None:
            out.append(event)
        off += (length + 3) & ~3
    return out


def _parse_cn(msg: bytes) -> ProcEvent | None:
    if len(msg) < _CN_MSG.size + _EVENT_HEAD.size:
        return None
    idx, val, _seq, _ack, length, _flags = _CN_MSG.unpack_from(msg)
    if (idx, val) != (CN_IDX_PROC, CN_VAL_PROC) or _CN_MSG.size + length > len(msg):
        return None
    ev = _CN_MSG.size
    what, _cpu, ts = _EVENT_HEAD.unpack_from(msg, ev)
    data = ev + _EVENT_HEAD.size
    end = _CN_MSG.size + length
    if what == PROC_EVENT_FORK and data + _FOUR.size <= end:
        _ppid, parent_tgid, child_pid, child_tgid = _FOUR.unpack_from(msg, data)
        if child_pid != child_tgid:
            return None  # a new thread, not a new process
        return ProcEvent("fork", child_tgid, parent_tgid, ts)
    if what in (PROC_EVENT_EXEC, PROC_EVENT_EXIT) and data + _TWO.size <= end:
        pid, tgid = _TWO.unpack_from(msg, data)
        if what == PROC_EVENT_EXIT and pid != tgid:
            return None  # one thread ended, the process lives on
        return ProcEvent("exec" if what == PROC_EVENT_EXEC else "exit", tgid, None, ts)
    return None


_EVENT_AT = _NLMSG.size + _CN_MSG.size
"""Where the proc_event starts in a datagram: after nlmsghdr and cn_msg."""
_DATA_AT = _EVENT_AT + _EVENT_HEAD.size
"""Where the event's data starts: after what, cpu and timestamp."""


def thread_filter() -> bytes:
    """A classic BPF program that keeps what `parse_events` reads and drops the rest.

    It keeps an exec, a fork whose child is a process (child pid equal to its thread-group
    id) and an exit of a process (pid equal to thread-group id): a new or ending thread,
    every other kind of event and anything too short to hold the fields are dropped.
    `parse_events` still checks everything, so a kernel that refuses the filter loses
    nothing but time. Offsets are those of `_parse_cn` (linux/cn_proc.h).
    """
    return b"".join(
        (
            insn(LD_W_ABS, k=_EVENT_AT),  # 0: A = what
            insn(JEQ_K, 11, 0, host_word(PROC_EVENT_EXEC)),  # 1: exec -> 13 keep
            insn(JEQ_K, 0, 4, host_word(PROC_EVENT_FORK)),  # 2: not a fork -> 7
            insn(LD_W_ABS, k=_DATA_AT + 8),  # 3: fork: child pid
            insn(TAX),  # 4
            insn(LD_W_ABS, k=_DATA_AT + 12),  # 5: child tgid
            insn(JEQ_X, 6, 5),  # 6: a process -> 13 keep, a thread -> 12 drop
            insn(JEQ_K, 0, 4, host_word(PROC_EVENT_EXIT)),  # 7: not an exit -> 12 drop
            insn(LD_W_ABS, k=_DATA_AT),  # 8: exit: pid
            insn(TAX),  # 9
            insn(LD_W_ABS, k=_DATA_AT + 4),  # 10: tgid
            insn(JEQ_X, 1, 0),  # 11: a process -> 13 keep, a thread -> 12 drop
            insn(RET_K, k=DROP),  # 12
            insn(RET_K, k=KEEP),  # 13
        )
    )


@dataclass(slots=True)
class _Seen:
    started: float
    """When its fork or exec arrived (monotonic)."""
    ident: bytes | None = None
    """Its /proc stat identity when `ref` was read (changes on exec and on pid reuse)."""
    ref: ProcessRef | None = None
    netns: int | None = None
    """Its network namespace (the inode of /proc/<pid>/ns/net), read with `ref`."""
    ended: float | None = None


class ProcessEvents:
    """Listens to the connector in a thread and remembers new processes (see module doc)."""

    def __init__(
        self,
        *,
        reader: ProcessReader | None = None,
        proc_root: str = "/proc",
        keep: float = 30.0,
        max_kept: int = 4096,
        fresh_for: float = 10.0,
        budget: float = 0.01,
    ) -> None:
        self._reader: ProcessReader = reader or ExecReader(proc_root)
        self._root = proc_root
        self.keep = keep
        self.max_kept = max_kept
        self.fresh_for = fresh_for
        """Seconds a process counts as new (searched first for a new connection's holder)."""
        self.budget = budget
        """CPU seconds per second that reading new processes' details may use."""
        self._seen: OrderedDict[int, _Seen] = OrderedDict()
        self._lock = threading.Lock()
        self._window = (float("-inf"), 0.0)
        self.events = self.read_late = 0
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = Waker()

    def start(self) -> ProcessEvents:
        """Subscribe (raises `ProcEventsUnavailableError`), then start the thread."""
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_CONNECTOR)
        except OSError as exc:
            raise ProcEventsUnavailableError(f"no process-events connector: {exc}") from None
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            with contextlib.suppress(OSError):  # without it, parse_events drops them
                attach(sock, thread_filter())
            sock.bind((0, 1 << (CN_IDX_PROC - 1)))
            sock.send(listen_message())
        except OSError as exc:
            sock.close()
            raise ProcEventsUnavailableError(f"cannot subscribe to process events: {exc}") from None
        sock.setblocking(False)
        self._sock = sock
        self._thread = threading.Thread(target=self._run, name="netwatch-procs", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread and close the socket."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
        if self._sock is not None:
            self._sock.close()

    def _run(self) -> None:
        sock = self._sock
        assert sock is not None  # noqa: S101  # start() opened it
        stop = self._stop
        watched: list[Any] = [sock, stop]
        while not stop.is_set():
            try:
                if sock not in select.select(watched, [], [], LONG_WAIT)[0]:
                    continue
                data = sock.recv(1 << 16)
            except (BlockingIOError, InterruptedError):
                continue
            except ValueError:
                return  # closed under us (stop)
            except OSError as exc:
                if exc.errno == 105:  # ENOBUFS: events were lost; carry on with the next
                    continue
                return  # closed under us (stop)
            for event in parse_events(data):
                self.note(event, time.monotonic())

    def note(self, event: ProcEvent, now: float) -> None:
        """Take one event: a new process is listed (on exec, its details read at once)."""
        self.events += 1
        with self._lock:
            seen = self._seen
            if event.kind == "exit":
                entry = seen.get(event.pid)
                if entry is not None:
                    entry.ended = now
                return
            entry = _Seen(now)
            if event.kind == "exec":
                old = seen.get(event.pid)
                if old is not None:
                    entry.started = old.started  # a fork then an exec: one new process
            seen[event.pid] = entry
            seen.move_to_end(event.pid)
            while len(seen) > self.max_kept or (
                seen and _expired(next(iter(seen.values())), now, self.keep)
            ):
                seen.popitem(last=False)
        if event.kind == "exec" and not self._over_budget():
            self._read(event.pid, entry)

    def _read(self, pid: int, entry: _Seen) -> None:
        ident = stat_identity(self._root, pid)
        if ident is None:
            return
        ref = self._reader.read(pid)
        if ref is not None:
            entry.ident, entry.ref = ident, ref
            try:
                entry.netns = os.stat(f"{self._root}/{pid}/ns/net").st_ino
            except OSError:
                entry.netns = None

    def fresh(self, now: float | None = None, netns: int | None = None) -> list[int]:
        """The processes that started in the last `fresh_for` seconds and have not exited,
        newest first; with `netns`, not those known to live in another network namespace
        (containers, other test labs: their sockets are not the watcher's to find)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            young = []
            for pid, entry in reversed(self._seen.items()):
                if now - entry.started > self.fresh_for:
                    break
                if entry.ended is None:
                    young.append((pid, entry))
        if netns is None:
            return [pid for pid, _ in young]
        out = []
        for pid, entry in young:
            if entry.netns is None:  # not read at its exec (over budget): one stat now
                try:
                    entry.netns = os.stat(f"{self._root}/{pid}/ns/net").st_ino
                except OSError:
                    continue  # gone
            if entry.netns == netns:
                out.append(pid)
        return out

    def remembered(self, pid: int, ident: bytes | None) -> ProcessRef | None:
        """`pid`'s details as read when it started: when `ident` (its stat identity now)
        matches what was read then, or when it is gone (`ident` None) and was seen lately."""
        with self._lock:
            entry = self._seen.get(pid)
        if entry is None:
            return None
        if entry.ref is None and ident is not None:
            self.read_late += 1
            self._read(pid, entry)  # over budget at exec time: read now, while it lives
        if entry.ref is None:
            return None
        if ident is None or ident == entry.ident:
            return entry.ref
        return None

    def _over_budget(self) -> bool:
        now, spent = time.monotonic(), time.thread_time()
        if now - self._window[0] >= 1.0:
            self._window = (now, spent)
        return spent - self._window[1] > self.budget


def _expired(entry: _Seen, now: float, keep: float) -> bool:
    if entry.ended is not None:
        return now - entry.ended > keep
    return False
