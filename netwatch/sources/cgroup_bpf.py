"""Cgroup socket hooks: a kernel program that names each TCP connection's process as it
connects, loaded through the `bpf()` system call with hand-assembled bytecode.

The connection-start watcher (`sources.connect_owners`) sees a SYN leave and then looks for
the socket's holder in /proc; a program that connects, sends and exits within milliseconds
is often gone by then (its socket is left in TIME_WAIT, with no inode). Here the kernel
tells: a `BPF_PROG_TYPE_SOCK_OPS` program (`cgroup_bpf_records.tcp_connect_program`) runs
inside every `connect()` on the machine and writes the caller's pid, name and the socket's
4-tuple into a ring buffer, which this module reads through mmap.

Everything goes through `ctypes` and `syscall(SYS_bpf, ...)` with `union bpf_attr` laid out
as include/uapi/linux/bpf.h has it (only the leading fields each command reads):

* `BPF_MAP_CREATE` (0): a `BPF_MAP_TYPE_RINGBUF` (27) map of `RING_BYTES`;
* `BPF_PROG_LOAD` (5): the program, licence "GPL" (the ring buffer helpers are GPL-only);
  the verifier's log is kept for the one line said when it refuses;
* `BPF_LINK_CREATE` (28): attached to the root of the cgroup2 hierarchy (found in
  /proc/self/mountinfo, or a parent's when this mount namespace lacks it: `cgroup2_root`)
  as `BPF_CGROUP_SOCK_OPS` (3), so every process is covered,
  containers included. A link, not `BPF_PROG_ATTACH`: the kernel detaches it when its last
  file descriptor closes, so a netwatch that exits, crashes or is killed leaves the
  machine as it found it (`tests/live/test_cgroup_bpf.py` checks with `BPF_PROG_QUERY`);
* for UDP, a `BPF_PROG_TYPE_CGROUP_SOCK_ADDR` program (`udp_owner_program`) linked four
  times (connect and sendmsg, IPv4 and IPv6) keeps each socket's caller in an LRU hash
  map by socket cookie, read with `BPF_MAP_LOOKUP_ELEM` (1) (`udp_owner`);
* the ring buffer is read as Documentation/bpf/ringbuf.rst lays it out: the consumer page
  mapped read-write, the producer page and the twice-mapped data read-only.

Opening needs CAP_BPF (or CAP_SYS_ADMIN) and CAP_NET_ADMIN; the daemon's collector opens it
before it gives up its capabilities and keeps only the file descriptors (reading the mapped
ring needs no privilege). Any failure raises `HooksUnavailableError` with one line saying
why, and netwatch falls back to the start watcher.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import mmap
import os
import select
import struct
from pathlib import Path

from netwatch.sources import cgroup_bpf_records as rec
from netwatch.sources.waker import Waker

SYS_BPF = {"x86_64": 321, "aarch64": 280}
"""The `bpf` system call's number per machine (arch/*/entry/syscalls tables)."""
BPF_MAP_CREATE, BPF_PROG_LOAD, BPF_OBJ_GET_INFO_BY_FD, BPF_PROG_QUERY, BPF_LINK_CREATE = (
    0,
    5,
    15,
    16,
    28,
)
BPF_MAP_TYPE_ARRAY, BPF_MAP_TYPE_LRU_HASH, BPF_MAP_TYPE_RINGBUF = 2, 9, 27
BPF_MAP_LOOKUP_ELEM = 1
BPF_PROG_TYPE_CGROUP_SOCK_ADDR = 18
UDP_HOOKS = (10, 11, 14, 15)
"""`BPF_CGROUP_INET4_CONNECT`, `INET6_CONNECT`, `UDP4_SENDMSG`, `UDP6_SENDMSG`."""
UDP_OWNERS = 1 << 16
"""Entries in the UDP owner map (least recently used go first: a flood of new sockets
pushes out old entries, never the fresh ones a DNS query's look-up needs)."""
BPF_F_MMAPABLE = 1 << 10
BPF_PROG_TYPE_SOCK_OPS = 13
BPF_CGROUP_SOCK_OPS = 3
RING_BYTES = 1 << 18
"""The ring buffer's data area: 256 KiB, about 2,900 records queued before the kernel drops."""
LOG_BYTES = 1 << 16


class HooksUnavailableError(Exception):
    """The hooks cannot run here; the message is one line saying why."""


_libc: ctypes.CDLL | None = None


def _bpf(cmd: int, attr: bytearray) -> int:
    """One `bpf()` call on `attr` (written back in place); raises OSError."""
    global _libc  # noqa: PLW0603  # loaded once, on first use
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    number = SYS_BPF.get(os.uname().machine)
    if number is None:
        raise OSError(errno.ENOSYS, f"no bpf() number known for {os.uname().machine}")
    buf = (ctypes.c_char * len(attr)).from_buffer(attr)
    res = int(_libc.syscall(number, cmd, buf, len(attr)))
    if res < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return res


def cgroup2_root(proc: str = "/proc") -> str | None:
    """Where the cgroup2 hierarchy is mounted, or None.

    This process's mounts first; then its parent's and pid 1's, through `/proc/<pid>/root`
    (`ip netns exec` and some service sandboxes give a process a mount namespace with a
    fresh /sys that lacks the cgroup mounts; the hierarchy is the same one, so another
    process's view of it serves; reading it needs the right to ptrace that process).
    """
    views = [(f"{proc}/self/mountinfo", "")]
    views += [(f"{proc}/{pid}/mountinfo", f"{proc}/{pid}/root") for pid in (os.getppid(), 1)]
    for mountinfo, prefix in views:
        try:
            text = Path(mountinfo).read_text()
        except OSError:
            continue
        for line in text.splitlines():
            head, sep, tail = line.partition(" - ")
            fields = head.split()
            if sep and tail.split(" ", 1)[0] == "cgroup2" and len(fields) >= 5:
                path = prefix + fields[4].replace("\\040", " ")
                if os.access(path, os.R_OK | os.X_OK):
                    return path
    return None


def create_ringbuf(size: int = RING_BYTES) -> int:
    """A new ring buffer map's fd."""
    attr = bytearray(struct.pack("<IIII", BPF_MAP_TYPE_RINGBUF, 0, 0, size).ljust(72, b"\0"))
    return _bpf(BPF_MAP_CREATE, attr)


def create_counter() -> int:
    """A one-slot array map of one 64-bit value, mappable (`BPF_F_MMAPABLE`): the kernel
    program adds to it, this process reads it from memory with no system call."""
    attr = struct.pack("<IIIII", BPF_MAP_TYPE_ARRAY, 4, 8, 1, BPF_F_MMAPABLE)
    return _bpf(BPF_MAP_CREATE, bytearray(attr.ljust(72, b"\0")))


def create_owner_map() -> int:
    """The LRU hash map of UDP socket cookie -> (pid_tgid, comm)."""
    attr = struct.pack("<IIII", BPF_MAP_TYPE_LRU_HASH, 8, rec.OWNER.size, UDP_OWNERS)
    return _bpf(BPF_MAP_CREATE, bytearray(attr.ljust(72, b"\0")))


def map_lookup(map_fd: int, key: bytes, size: int) -> bytes | None:
    """The value under `key` in a map, None when absent (needs no capability: the fd is
    the right to read it)."""
    k = ctypes.create_string_buffer(key, len(key))
    v = ctypes.create_string_buffer(size)
    attr = bytearray(struct.pack("<IIQQQ", map_fd, 0, ctypes.addressof(k), ctypes.addressof(v), 0))
    try:
        _bpf(BPF_MAP_LOOKUP_ELEM, attr)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise
    return v.raw


def load_program(prog_type: int, attach_type: int, code: bytes, name: bytes) -> int:
    """The loaded program's fd; the verifier's last log line is in the error when refused."""
    insns = ctypes.create_string_buffer(code, len(code))
    licence = ctypes.create_string_buffer(b"GPL")
    log = ctypes.create_string_buffer(LOG_BYTES)
    attr = bytearray(128)
    struct.pack_into(
        "<IIQQIIQII16sII",
        attr,
        0,
        prog_type,
        len(code) // 8,
        ctypes.addressof(insns),
        ctypes.addressof(licence),
        1,
        LOG_BYTES,
        ctypes.addressof(log),
        0,
        0,
        name[:15],
        0,
        attach_type,
    )
    try:
        return _bpf(BPF_PROG_LOAD, attr)
    except OSError as exc:
        lines = log.value.decode("utf-8", "replace").strip().splitlines()
        why = f"{exc.strerror}" + (f" (verifier: {lines[-1]})" if lines else "")
        raise OSError(exc.errno, why) from None


def link_create(prog_fd: int, target_fd: int, attach_type: int) -> int:
    """A link attaching `prog_fd` to `target_fd` (a cgroup folder's fd)."""
    attr = bytearray(struct.pack("<IIII", prog_fd, target_fd, attach_type, 0).ljust(64, b"\0"))
    return _bpf(BPF_LINK_CREATE, attr)


def prog_id(prog_fd: int) -> int:
    """The kernel's id for a loaded program (`struct bpf_prog_info`'s second field)."""
    info = ctypes.create_string_buffer(64)
    attr = bytearray(struct.pack("<IIQ", prog_fd, 64, ctypes.addressof(info)))
    _bpf(BPF_OBJ_GET_INFO_BY_FD, attr)
    return int(struct.unpack_from("<II", info.raw)[1])


def attached_ids(cgroup: str, attach_type: int = BPF_CGROUP_SOCK_OPS) -> list[int]:
    """The ids of the programs attached to `cgroup` for `attach_type` (`BPF_PROG_QUERY`)."""
    fd = os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY)
    try:
        ids = (ctypes.c_uint32 * 256)()
        attr = bytearray(
            struct.pack("<IIIIQI", fd, attach_type, 0, 0, ctypes.addressof(ids), 256).ljust(
                64, b"\0"
            )
        )
        _bpf(BPF_PROG_QUERY, attr)
        count = struct.unpack_from("<I", attr, 24)[0]
        return list(ids[: min(count, 256)])
    finally:
        os.close(fd)


class CgroupHooks:
    """The loaded program, its link to the root cgroup and the mapped ring buffer.

    `open()` does everything that needs privileges; afterwards `read` needs none.
    """

    def __init__(self) -> None:
        self.cgroup: str | None = None
        self.program_id = 0
        self._fds: list[int] = []
        self._ring = -1
        self._consumer: mmap.mmap | None = None
        self._producer: mmap.mmap | None = None
        self._data: memoryview | None = None
        self._poll: select.epoll | None = None
        self._waker = -1
        """The fd of the `Waker` registered with `_poll` beside the ring (-1: none)."""
        self._drops: mmap.mmap | None = None
        self._owners = -1
        self.udp = False
        """The UDP hooks are attached too (`udp_owner` answers)."""
        self.udp_problem: str | None = None
        """Why they are not, in one line."""
        self.records = 0
        """Records read since open."""

    def open(self) -> CgroupHooks:
        """Create the ring buffer, load the program, attach it to the root cgroup and map
        the ring; raises `HooksUnavailableError` (one line) and leaves nothing behind."""
        try:
            self._open()
        except OSError as exc:
            self.close()
            raise HooksUnavailableError(f"cgroup socket hooks unavailable: {exc}") from None
        return self

    def _open(self) -> None:
        root = cgroup2_root()
        if root is None:
            raise OSError(errno.ENOENT, "no cgroup2 hierarchy mounted")
        self.cgroup = root
        self._ring = create_ringbuf()
        self._fds.append(self._ring)
        drops = create_counter()
        self._fds.append(drops)
        self._drops = mmap.mmap(drops, mmap.PAGESIZE, mmap.MAP_SHARED, mmap.PROT_READ)
        try:
            code = rec.tcp_connect_program(self._ring, drops)
            prog = load_program(BPF_PROG_TYPE_SOCK_OPS, BPF_CGROUP_SOCK_OPS, code, b"netwatch_conn")
        except OSError as exc:
            if exc.errno == errno.EPERM:
                raise
            # An older verifier may refuse the name and cookie helpers here: without them.
            code = rec.tcp_connect_program(self._ring, drops, extras=False)
            prog = load_program(BPF_PROG_TYPE_SOCK_OPS, BPF_CGROUP_SOCK_OPS, code, b"netwatch_conn")
        self._fds.append(prog)
        self.program_id = prog_id(prog)
        page = mmap.PAGESIZE
        self._consumer = mmap.mmap(
            self._ring, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE
        )
        self._producer = mmap.mmap(
            self._ring, page + 2 * RING_BYTES, mmap.MAP_SHARED, mmap.PROT_READ, offset=page
        )
        self._data = memoryview(self._producer)[page:]
        cgroup = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            self._fds.append(link_create(prog, cgroup, BPF_CGROUP_SOCK_OPS))
        finally:
            os.close(cgroup)
        self._poll = select.epoll()
        self._poll.register(self._ring, select.EPOLLIN)
        try:
            self._open_udp(root)
        except OSError as exc:  # TCP alone still helps: say so and go on
            self.udp_problem = f"UDP socket hooks unavailable: {exc}"

    def _open_udp(self, root: str) -> None:
        self._owners = create_owner_map()
        self._fds.append(self._owners)
        code = rec.udp_owner_program(self._owners)
        cgroup = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for attach in UDP_HOOKS:
                prog = load_program(BPF_PROG_TYPE_CGROUP_SOCK_ADDR, attach, code, b"netwatch_udp")
                self._fds.append(prog)
                self._fds.append(link_create(prog, cgroup, attach))
        finally:
            os.close(cgroup)
        self.udp = True

    def udp_owner(self, cookie: int) -> tuple[int, str] | None:
        """(pid, kernel name) of the process that last connected or sent with the UDP
        socket of `cookie` (sock_diag's `idiag_cookie`), if the hooks saw it."""
        if not self.udp or not cookie:
            return None
        try:
            value = map_lookup(self._owners, cookie.to_bytes(8, "little"), rec.OWNER.size)
        except OSError:
            return None
        return None if value is None else rec.decode_owner(value)

    def wait(self, timeout: float, waker: Waker | None = None) -> bool:
        """Wait up to `timeout` seconds for records (the kernel wakes the ring's pollers), or
        until `waker` is set; True when records are there."""
        if self._poll is None:
            return False
        if self._pending():
            return True
        if waker is not None and self._waker != waker.fileno():
            self._poll.register(waker.fileno(), select.EPOLLIN)
            self._waker = waker.fileno()
        try:
            events = self._poll.poll(timeout)
        except InterruptedError:
            return False
        return any(fd != self._waker for fd, _ in events)

    def _pending(self) -> bool:
        if self._consumer is None or self._producer is None:
            return False
        cons = struct.unpack_from("<Q", self._consumer, 0)[0]
        prod = struct.unpack_from("<Q", self._producer, 0)[0]
        return bool(prod > cons)

    @property
    def dropped(self) -> int:
        """Records the kernel program could not write since open (the ring was full)."""
        if self._drops is None:
            return 0
        return int(struct.unpack_from("<Q", self._drops, 0)[0])

    def read(self, limit: int = 512) -> list[rec.ConnectRecord]:
        """The records written since the last read (at most `limit`), oldest first."""
        if self._consumer is None or self._producer is None or self._data is None:
            return []
        cons = struct.unpack_from("<Q", self._consumer, 0)[0]
        prod = struct.unpack_from("<Q", self._producer, 0)[0]
        items, pos = rec.walk(self._data, RING_BYTES - 1, cons, prod, limit)
        struct.pack_into("<Q", self._consumer, 0, pos)
        out = list(rec.records(items))
        self.records += len(out)
        return out

    def close(self) -> None:
        """Unmap and close everything; the kernel detaches the program with the link."""
        if self._poll is not None:
            self._poll.close()
            self._poll = None
        if self._data is not None:
            self._data.release()
            self._data = None
        for m in (self._consumer, self._producer, self._drops):
            if m is not None:
                with contextlib.suppress(BufferError):
                    m.close()
        self._consumer = self._producer = self._drops = None
        for fd in reversed(self._fds):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds = []
        self._ring = self._owners = -1
        self.udp = False
