"""Other network namespaces (containers): which are in use, their sockets, and what they are.

A container's sockets live in its own network namespace, which sock_diag in the host's
namespace does not list. `Namespaces` finds the namespaces processes use (`/proc/*/ns/net`,
by inode; the sampler's own and pid 1's left out), and lists each one's TCP and UDP sockets:

* with sock_diag inside it: a helper thread enters the namespace (`setns`) and opens a
  NETLINK_SOCK_DIAG socket there, then ends; the socket stays bound to the namespace it was
  made in, so it is kept and asked at each listing like the host's (counters included).
  `setns` needs CAP_SYS_ADMIN;
* without that (the daemon's collector keeps no CAP_SYS_ADMIN, section 7 of
  docs/architecture.md): from `/proc/<pid>/net/{tcp,tcp6,udp,udp6}` of a process inside it,
  which the kernel prints for that process's namespace; no tcp_info counters (capture has
  the bytes).

Socket inodes are unique across namespaces and `/proc/<pid>/fd` links are read from the
host's PID namespace, so the owners come from the sampler's usual inode map
(`sources.processes`), with host pids.

Each namespace is named once, when first seen (`Container`): the cgroup path of its lowest
pid gives the runtime and the container id (`parse_cgroup`), docker's `config.v2.json` the
container's name when that file exists, and an `ip netns` name (`/run/netns/<name>`) names
the rest. No daemon is asked.

Cost is bounded: the namespaces are looked for at most every `RESCAN` seconds (one `stat`
per process), at most `MAX_NAMESPACES` are listed, each at most every `LIST_EVERY` seconds
(its last list is handed on in between), and a namespace whose processes are gone
has its socket closed (the socket would keep the namespace alive).

Listing TCP is the expensive part: the kernel walks its whole established-socket hash table
(shared by every namespace, sized by memory, mostly empty buckets) for each dump or
`/proc/<pid>/net/tcp{,6}` read, about 5.5 ms of kernel CPU per read on the 2-core test
machine whatever the namespace holds. So a namespace's TCP list is read again only when its
own TCP counters say something may have changed (`tcp_signature`: the namespace's TCP MIB
and its TCP and TCP6 sockets in use and TIME_WAIT count, about 0.08 ms to read), and at
least every `TCP_RELIST` seconds; UDP, whose tables are small, is listed every time.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import os
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from netwatch.model import Container, IPAddress, Transport
from netwatch.sources import netlink, procnet

RESCAN = 2.0
"""Seconds between looks for namespaces that appeared or went."""
LIST_EVERY = 2.0
"""Seconds a namespace's socket list is kept before it is listed again. Each listing walks
the kernel's socket hash tables (shared by every namespace) once per dump: about 6 ms of
CPU per namespace on the 2-core test machine (`bench/namespaces.py`), so a container's
sockets are at most this old; capture gives its flows' bytes meanwhile."""
MAX_NAMESPACES = 256
"""Namespaces listed at most; more are counted (`skipped`), lowest inode first listed."""
TCP_RELIST = 30.0
"""Seconds a namespace's TCP list is kept at most while its `tcp_signature` stays the same.
Every TCP state change but one sends or receives a segment or changes a count in the
signature; the exception is a listener closed and another opened within one listing
interval with no other TCP activity in the namespace, which this bounds."""
_NAME_TRIES = 4
"""Processes of a namespace whose cgroup is read, lowest pid first, to name its container."""
_CONFIG_LIMIT = 1 << 20
"""docker's config.v2.json read at most this far (it is a few KB)."""

_HEX_ID = r"([0-9a-f]{12,64})"
_CGROUP_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?:^|/)docker-" + _HEX_ID + r"\.scope$"), "docker"),
    (re.compile(r"(?:^|/)docker/" + _HEX_ID + r"$"), "docker"),
    (re.compile(r"(?:^|/)libpod-" + _HEX_ID + r"\.scope(?:/container)?$"), "podman"),
    (re.compile(r"(?:^|/)cri-containerd-" + _HEX_ID + r"\.scope$"), "containerd"),
    (re.compile(r"(?:^|/)crio-" + _HEX_ID + r"\.scope$"), "cri-o"),
    (re.compile(r"(?:^|/)lxc\.payload\.([^/]+)$"), "lxc"),
    (re.compile(r"(?:^|/)systemd-nspawn@([^/]+)\.service(?:/.*)?$"), "systemd-nspawn"),
)
_MACHINE = re.compile(r"(?:^|/)machine\.slice/machine-([^/]+)\.scope(?:/.*)?$")
_QEMU = re.compile(r"^qemu-\d+-(.+)$")
_ESCAPE = re.compile(r"\\x([0-9a-fA-F]{2})")


def _unescape(name: str) -> str:
    """systemd escapes unit names (`-` inside a name is `\\x2d`)."""
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), name)


def parse_cgroup(text: str) -> tuple[str, str] | None:
    """(runtime, container id or name) from `/proc/<pid>/cgroup`, or None for a host process.

    Reads every line (`0::/path` on cgroup v2, `N:controllers:/path` on v1) and takes the
    first path a runtime names: docker (`docker-<id>.scope`, `/docker/<id>`), podman
    (`libpod-<id>.scope`), containerd and CRI-O, LXC (`lxc.payload.<name>`), libvirt QEMU
    machines (`machine-qemu\\x2d<n>\\x2d<name>.scope`) and systemd-nspawn (`machine-<name>`,
    `systemd-nspawn@<name>.service`). Never raises.
    """
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        path = parts[2].strip()
        for pattern, runtime in _CGROUP_PATTERNS:
            m = pattern.search(path)
            if m is not None:
                name = _unescape(m.group(1)) if runtime == "systemd-nspawn" else m.group(1)
                return runtime, name
        m = _MACHINE.search(path)
        if m is not None:
            unit = _unescape(m.group(1))
            qemu = _QEMU.match(unit)
            if qemu is not None:
                return "libvirt", qemu.group(1)
            if unit:
                return "systemd-nspawn", unit
    return None


def docker_name(container_id: str, root: str = "/var/lib/docker/containers") -> str | None:
    """The container's name from docker's own `config.v2.json`, if the file is there."""
    if not re.fullmatch(r"[0-9a-f]{64}", container_id):
        return None
    try:
        with open(os.path.join(root, container_id, "config.v2.json"), "rb") as fh:
            data = json.loads(fh.read(_CONFIG_LIMIT))
    except (OSError, ValueError, RecursionError):
        return None
    name = data.get("Name") if isinstance(data, dict) else None
    if not isinstance(name, str) or not name.strip("/"):
        return None
    return name.strip("/")[:200]


def netns_inode(path: str) -> int | None:
    """The inode of the network namespace `path` (`/proc/<pid>/ns/net`) names, or None."""
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def _numbers(text: str, prefix: str) -> tuple[str, ...]:
    """The words after every line of `text` that starts with `prefix` (kept as text: only
    compared)."""
    out: list[str] = []
    for line in text.splitlines():
        if line.startswith(prefix):
            out.extend(line.split()[1:])
    return tuple(out)


def tcp_signature(net: str) -> tuple[str, ...] | None:
    """What says whether a namespace's TCP sockets may have changed, from its `/proc/<pid>/net`
    folder `net` (None when it cannot be read): the TCP MIB (opens, resets, segments in and
    out, current established: any state change but a listener's moves one of them), and from
    `sockstat`/`sockstat6` the TCP and TCP6 sockets in use and TIME_WAIT sockets (a listener
    opening or closing, a TIME_WAIT socket expiring). All of these are the namespace's own;
    `sockstat`'s orphan, alloc and mem are the host's and are left out."""
    try:
        with open(os.path.join(net, "snmp"), encoding="ascii", errors="replace") as fh:
            mib = _numbers(fh.read(), "Tcp:")
        with open(os.path.join(net, "sockstat"), encoding="ascii", errors="replace") as fh:
            words = _numbers(fh.read(), "TCP:")
        with open(os.path.join(net, "sockstat6"), encoding="ascii", errors="replace") as fh:
            six = _numbers(fh.read(), "TCP6:")
    except OSError:
        return None
    if not mib:
        return None
    # `TCP: inuse N orphan N tw N alloc N mem N`: inuse and tw are per namespace.
    pairs = dict(zip(words[::2], words[1::2], strict=False))
    return (*mib, pairs.get("inuse", ""), pairs.get("tw", ""), *six)


def _ip_netns_names(run: str = "/run/netns") -> dict[int, str]:
    """netns inode -> the name `ip netns add` gave it (a bind mount in /run/netns)."""
    out: dict[int, str] = {}
    try:
        names = os.listdir(run)
    except OSError:
        return out
    for name in sorted(names):
        inode = netns_inode(os.path.join(run, name))
        if inode is not None:
            out.setdefault(inode, name)
    return out


CLONE_NEWNET = 0x40000000


def _setns(fd: int) -> None:
    """setns(2) into a network namespace: `os.setns` is Python 3.12+, so libc's on 3.11."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def open_in_namespace(path: str) -> netlink.DiagSocket:
    """A sock_diag socket made inside the network namespace `path` names.

    A helper thread enters the namespace (the network namespace is per thread), makes the
    socket and ends; the socket stays bound to that namespace. Raises OSError (EPERM
    without CAP_SYS_ADMIN) or `NetlinkUnavailableError`.
    """
    result: list[netlink.DiagSocket | BaseException] = []

    def enter() -> None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                _setns(fd)
            finally:
                os.close(fd)
            result.append(netlink.DiagSocket())
        except (OSError, netlink.NetlinkUnavailableError) as exc:
            result.append(exc)

    helper = threading.Thread(target=enter, name="netwatch-setns", daemon=True)
    helper.start()
    helper.join()
    got = result[0] if result else OSError("setns helper thread failed")
    if isinstance(got, BaseException):
        raise got
    return got


Batch = tuple[Transport, list[netlink.Record], Container]
"""One namespace's records of one transport, with the namespace."""

_DUMPS = (
    (socket.AF_INET, socket.IPPROTO_UDP),
    (socket.AF_INET6, socket.IPPROTO_UDP),
)
_PROC_FILES = (
    ("tcp", socket.AF_INET, Transport.TCP),
    ("tcp6", socket.AF_INET6, Transport.TCP),
    ("udp", socket.AF_INET, Transport.UDP),
    ("udp6", socket.AF_INET6, Transport.UDP),
)


@dataclass
class _Namespace:
    inode: int
    pid: int
    container: Container
    diag: netlink.DiagSocket | None
    listed: list[Batch] | None = None
    due: float = float("-inf")
    tcp: list[Batch] | None = None
    """The last TCP list, kept while `tcp_signature` stays `signature` (`tcp_due` at most)."""
    signature: tuple[str, ...] | None = None
    tcp_due: float = float("-inf")
    addresses: frozenset[IPAddress] = frozenset()
    """The namespace's own addresses, read with its sockets (`procnet.read_addresses`)."""


def _address_order(ip: IPAddress) -> tuple[int, int]:
    return ip.version, int(ip)


class Namespaces:
    """The network namespaces in use other than ours, each with its sockets' records."""

    def __init__(
        self,
        proc_root: str = "/proc",
        *,
        monotonic: Callable[[], float] = time.monotonic,
        rescan: float = RESCAN,
        list_every: float = LIST_EVERY,
        tcp_relist: float = TCP_RELIST,
        run_netns: str = "/run/netns",
        docker_root: str = "/var/lib/docker/containers",
        enter: bool = True,
    ) -> None:
        self._root = proc_root
        self._monotonic = monotonic
        self._rescan = rescan
        self._list_every = list_every
        self._tcp_relist = tcp_relist
        self._run_netns = run_netns
        self._docker_root = docker_root
        self._own = {netns_inode(f"{proc_root}/self/ns/net"), netns_inode(f"{proc_root}/1/ns/net")}
        """Ours, and the machine's (pid 1's: not a container when netwatch itself runs in a
        namespace of its own, as benches and tests do)."""
        self._known: dict[int, _Namespace] = {}
        self._next = float("-inf")
        self._setns = enter
        """False once entering a namespace was refused (no CAP_SYS_ADMIN): /proc from then."""
        self.entered = 0
        """How many listed namespaces are read with sock_diag inside them (the rest: /proc)."""
        self.skipped = 0
        """Namespaces in use but not listed (over `MAX_NAMESPACES`) at the last look."""

    @property
    def containers(self) -> list[Container]:
        """The namespaces listed, as containers."""
        return [ns.container for ns in self._known.values()]

    def _look(self) -> None:
        """Find the namespaces in use; name new ones, drop gone ones (closing their socket)."""
        now = self._monotonic()
        if now < self._next:
            return
        self._next = now + self._rescan
        found = self.in_use()
        wanted = sorted(found)[:MAX_NAMESPACES]
        self.skipped = len(found) - len(wanted)
        for inode in [i for i in self._known if i not in found]:
            gone = self._known.pop(inode)
            if gone.diag is not None:
                gone.diag.close()
        names: dict[int, str] | None = None
        for inode in wanted:
            known = self._known.get(inode)
            if known is not None:
                known.pid = found[inode][0]
                continue
            if names is None:
                names = _ip_netns_names(self._run_netns)
            pids = found[inode]
            pid = pids[0]
            container = self._name(inode, pids, names.get(inode))
            self._known[inode] = _Namespace(inode, pid, container, self._open(pid, inode))

    def in_use(self) -> dict[int, list[int]]:
        """netns inode -> its lowest pids (the container's first processes; at most
        `_NAME_TRIES`), ours and pid 1's left out."""
        found: dict[int, list[int]] = {}
        try:
            pids = sorted(int(n) for n in os.listdir(self._root) if n.isdecimal())
        except OSError:
            pids = []
        for pid in pids:
            inode = netns_inode(f"{self._root}/{pid}/ns/net")
            if inode is not None and inode not in self._own:
                pids = found.setdefault(inode, [])
                if len(pids) < _NAME_TRIES:
                    pids.append(pid)
        return found

    def _name(self, inode: int, pids: list[int], netns_name: str | None) -> Container:
        """The container from the cgroup of the namespace's first processes (a helper such
        as a port forwarder may join the namespace from outside the container's cgroup),
        else its `ip netns` name."""
        parsed = None
        for pid in pids:
            try:
                with open(f"{self._root}/{pid}/cgroup", encoding="utf-8", errors="replace") as fh:
                    parsed = parse_cgroup(fh.read(65536))
            except OSError:
                continue
            if parsed is not None:
                break
        if parsed is not None:
            runtime, ident = parsed
            name: str | None = None
            if runtime == "docker":
                name = docker_name(ident, self._docker_root)
            elif runtime in ("libvirt", "systemd-nspawn", "lxc"):
                name = ident
            return Container(netns=inode, name=name, runtime=runtime)
        if netns_name is not None:
            return Container(netns=inode, name=netns_name, runtime="netns")
        return Container(netns=inode)

    def _open(self, pid: int, inode: int) -> netlink.DiagSocket | None:
        if not self._setns:
            return None
        path = f"{self._root}/{pid}/ns/net"
        try:
            diag = open_in_namespace(path)
        except PermissionError:
            self._setns = False  # no CAP_SYS_ADMIN: /proc/<pid>/net for every namespace
            return None
        except (OSError, netlink.NetlinkUnavailableError):
            return None
        if netns_inode(path) != inode:  # the pid left (or was reused) while we entered
            diag.close()
            return None
        return diag

    def batches(self) -> list[Batch]:
        """Every listed namespace's TCP and UDP records, with its container: listed again
        when `list_every` seconds have passed, else the same lists as last time."""
        self._look()
        now = self._monotonic()
        out: list[Batch] = []
        for ns in list(self._known.values()):
            if ns.listed is None or now >= ns.due:
                ns.listed, ns.due = self._records(ns, now), now + self._list_every
            out.extend(ns.listed)
        self.entered = sum(ns.diag is not None for ns in self._known.values())
        return out

    def homes(self) -> tuple[tuple[int, tuple[IPAddress, ...]], ...]:
        """Each listed namespace's own addresses by its inode (`SocketTable.homes`), as of
        its last listing: what a container's socket bound to the wildcard address serves."""
        return tuple(
            (ns.inode, tuple(sorted(ns.addresses, key=_address_order)))
            for ns in self._known.values()
            if ns.addresses
        )

    def _records(self, ns: _Namespace, now: float) -> list[Batch]:
        c = ns.container
        root = f"{self._root}/{ns.pid}/net"
        inside = netns_inode(f"{self._root}/{ns.pid}/ns/net") == ns.inode
        if inside:
            ns.addresses = procnet.read_addresses(root)
        # Read before the listing, so a change made during it shows at the next look.
        signature = tcp_signature(root) if inside else None
        keep = (
            ns.tcp is not None
            and signature is not None
            and signature == ns.signature
            and now < ns.tcp_due
        )
        if ns.diag is not None:
            try:
                tcp = (
                    ns.tcp
                    if keep and ns.tcp is not None
                    else [(Transport.TCP, ns.diag.dump_tcp(), c)]
                )
                udp = [(Transport.UDP, ns.diag.dump(f, p), c) for f, p in _DUMPS]
                return self._kept(ns, tcp, signature, now, keep) + udp
            except netlink.NetlinkUnavailableError:
                ns.diag.close()
                ns.diag = None  # from /proc from now on
                ns.tcp, keep = None, False  # counters came with that list; this one has none
        if not inside:
            return []  # that pid left the namespace; the next look finds another
        got = [
            (t, [procnet.as_record(r) for r in procnet.read_proc_net(name, family, root)], c)
            for name, family, t in _PROC_FILES
            if not (keep and t is Transport.TCP)
        ]
        if keep and ns.tcp is not None:
            return ns.tcp + got
        return self._kept(ns, got[:2], signature, now, False) + got[2:]

    def _kept(
        self,
        ns: _Namespace,
        tcp: list[Batch],
        signature: tuple[str, ...] | None,
        now: float,
        kept: bool,
    ) -> list[Batch]:
        """Remember a fresh TCP list with the signature read before it; `tcp` either way."""
        if not kept:
            ns.tcp, ns.signature, ns.tcp_due = tcp, signature, now + self._tcp_relist
        return tcp

    def close(self) -> None:
        """Close every namespace's socket."""
        for ns in self._known.values():
            if ns.diag is not None:
                with contextlib.suppress(OSError):
                    ns.diag.close()
        self._known.clear()
