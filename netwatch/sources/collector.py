"""The daemon's privileged half: reads what needs capabilities and hands it over as records.

It runs in a child forked by `netwatch daemon` as root (docs/architecture.md, section 7) and
keeps only `COLLECTOR_CAPS`. It answers the analyzer's requests on their socketpair, one at a
time, in the order they come:

* `sample` / `refresh`: the socket table (`sources.sockets.SocketSampler`), sent as a first
  full table and after that as upserts and removals of the entries that changed. The sampler
  hands back last sample's very entry object for a socket whose kernel record and owner did
  not change, so "changed" is an `is` test per entry, made in C (or, for a refresh it
  patched in place, the sampler says where: `SocketSampler.patched`); entries are named by their
  inode (unique while the socket lives) or, for the few without one (TIME_WAIT, psutil), by
  their key. Processes are sent once, in a table, and referenced by a number. With the
  answer go the owners of connections the start watcher (`sources.connect_owners`) caught
  since the last answer, its counters and the sampler's status when it changed.
* `facts`: the host facts (`sources.hostfacts`: SoftEther configs, which may be root's).
* `config`: the text of the daemon's config file, fixed at start, so that SIGHUP reloads a
  file the analyzer's user may not read; the analyzer parses it.
* `socket`: the device and inode of the dashboards' socket the daemon bound (as root) at a
  path fixed at start; when the collector exits it removes that very file, which the
  analyzer may not (the folder is root's), and nothing else.

It parses nothing that strangers send: packets are dissected in the analyzer, and the start
watcher decodes only the headers of this host's own outgoing SYNs and DNS queries that its
BPF filter lets through. When the analyzer closes the socketpair (it exited or died) the
collector exits.
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import logging
import operator
import signal
import socket
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from netwatch import codec
from netwatch.errors import CaptureUnavailableError
from netwatch.model import Endpoint, FlowKey, ProcessRef, SocketEntry, SocketTable, Transport
from netwatch.sources.cgroup_bpf import CgroupHooks
from netwatch.sources.channel import Channel, ChannelClosedError
from netwatch.sources.connect_owners import ConnectionOwners, open_hooks, watcher_priority
from netwatch.sources.hostfacts import HostFactsReader
from netwatch.sources.namespaces import Namespaces
from netwatch.sources.netlink import NetlinkUnavailableError
from netwatch.sources.privdrop import die_with_parent, keep_only
from netwatch.sources.privileges import (
    CAP_DAC_READ_SEARCH,
    CAP_NET_ADMIN,
    CAP_NET_RAW,
    CAP_SYS_PTRACE,
)
from netwatch.sources.sockets import SocketSampler

log = logging.getLogger("netwatch.collector")

COLLECTOR_CAPS = frozenset({CAP_NET_RAW, CAP_NET_ADMIN, CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH})
"""What the collector keeps, and why each:

* CAP_NET_RAW: the connection-start watcher opens its packet socket (SYNs, DNS queries);
* CAP_NET_ADMIN: that socket's receive buffer past `rmem_max` (SO_RCVBUFFORCE), and the
  process-events connector's subscription (`sources.proc_events`);
* CAP_SYS_PTRACE: read `/proc/<pid>/fd` and `exe` of other users' processes (socket owners);
* CAP_DAC_READ_SEARCH: enter those `fd` folders (mode 0500, owned by the process's user),
  and read SoftEther configs whatever their mode.

sock_diag dumps and `/proc/net` need none. Not CAP_SYS_ADMIN, though listing a container's
sockets with sock_diag means entering its network namespace (`setns`), which needs it: it is
the widest capability there is (mounts, BPF, namespaces), and the service's unit forbids
`setns` anyway (`RestrictNamespaces=yes`). The collector lists other namespaces' sockets from
`/proc/<pid>/net` instead (`sources.namespaces`, `enter=False`): the same sockets and
owners, without tcp_info counters (capture counts their bytes), at about three times the
CPU per listing (bench/namespaces.py). Everything else (CAP_SETUID, CAP_CHOWN, ...) is
gone from every set, including the bounding set, and `no_new_privs` is set."""

_INODE = operator.attrgetter("inode")
_NO_ENTRIES: dict[Any, SocketEntry] = {}
PROCESS_TABLE_LIMIT = 8192
CONVERSATION_MEMO = 65536
"""Parsed refresh conversations kept at most before the memory starts afresh."""
"""Past this many sent processes (plus one per entry) the table starts afresh (`procs_reset`)."""


class TableDiff:
    """Turns each socket table into the upserts and removals since the last one sent."""

    def __init__(self) -> None:
        self._sent: dict[Any, SocketEntry] = {}
        self._procs: dict[ProcessRef, int] = {}
        self._next_proc = itertools.count(1)
        self._keys: dict[FlowKey, dict[str, Any]] = {}
        """Encoded keys by key: a re-read socket's key is encoded once."""
        self._by_inode = False
        """Whether the last full diff named each entry that has an inode by that inode (not
        so when an inode was listed twice); the shortcut keys on it."""
        self._entries: tuple[SocketEntry, ...] | None = None
        """The entries of the last table sent: the sampler hands on the very tuple when a
        refresh changed nothing, and keeps the order when it only re-read sockets."""

    def message(
        self,
        table: SocketTable,
        patched: tuple[tuple[SocketEntry, ...], list[int]] | None = None,
    ) -> dict[str, Any]:
        """The `table` message: `full` the first time, else what changed.

        Two shortcuts keep an idle or mostly idle tick from walking every socket in Python:
        the very tuple of last time means nothing changed, and a table of the same length
        whose changed positions are the same sockets (same inode) re-read means just those
        are upserts (found in C, position by position, or given: `patched` is the sampler's
        word, `SocketSampler.patched`, for a table patched from the entries last sent).
        Anything else takes the full diff.
        """
        entries = table.entries
        last = self._entries
        if last is not None and entries is last:
            return {"taken_at": table.taken_at}
        if last is not None and self._by_inode and len(entries) == len(last):
            if patched is not None and patched[0] is last:
                moved = patched[1]
            else:
                moved = list(
                    itertools.compress(range(len(entries)), map(operator.is_not, entries, last))
                )
            if all(_same_socket(last[i], entries[i]) for i in moved):
                sent = self._sent
                before = {last[i].inode: last[i] for i in moved}
                for i in moved:
                    sent[entries[i].inode] = entries[i]
                self._entries = entries
                return self._out(table, list(before), sent, [], False, before)
        self._entries = entries
        handles = list(map(_INODE, entries))
        self._by_inode = True
        if None in handles or 0 in handles:  # entries with an inode keep it as their handle
            handles = _named(entries, handles)
        now = dict(zip(handles, entries, strict=True))
        if len(now) != len(entries):  # an inode listed twice: name every entry by its key
            handles = _named(entries, [None] * len(entries))
            now = dict(zip(handles, entries, strict=True))
            self._by_inode = False
        before = self._sent
        full = not before
        if full:
            changed: Sequence[Any] = handles
        else:
            same = map(operator.is_, map(before.get, handles), entries)
            changed = [h for h, s in zip(handles, same, strict=True) if not s]
        removed = list(before.keys() - now.keys()) if before else []
        self._sent = now
        return self._out(table, changed, now, removed, full, before)

    def _out(
        self,
        table: SocketTable,
        changed: Sequence[Any],
        now: dict[Any, SocketEntry],
        removed: list[Any],
        full: bool,
        before: Mapping[Any, SocketEntry],
    ) -> dict[str, Any]:
        """The message for these changed handles (entries in `now`) and removals.

        A changed socket whose facts are those last sent for its handle (`before`), as when
        only its traffic moved, goes as its counters alone (`counters`): the analyzer keeps
        the rest of the entry it holds. Any other change goes whole (`upserts`)."""
        out: dict[str, Any] = {"taken_at": table.taken_at}
        if len(self._procs) > PROCESS_TABLE_LIMIT + len(table.entries):
            self._procs.clear()
            out["procs_reset"] = True
        procs: list[list[Any]] = []
        upserts = []
        keys = self._keys
        if len(keys) > 2 * len(table.entries) + 1024:
            keys.clear()
        counters = []
        for h in changed:
            e = now[h]
            old = before.get(h)
            if old is not None and _same_facts(old, e):
                counters.append(codec.socket_counters_to_list(h, e))
                continue
            ref = None
            if e.process is not None:
                ref = self._procs.get(e.process)
                if ref is None:
                    ref = self._procs[e.process] = next(self._next_proc)
                    procs.append([ref, codec.process_to_dict(e.process)])
            upserts.append([h, codec.socket_entry_to_list(e, ref, keys)])
        if full:
            out["full"] = True
        if procs:
            out["procs"] = procs
        if upserts:
            out["upserts"] = upserts
        if counters:
            out["counters"] = counters
        if removed:
            out["removed"] = removed
        return out


def _same_facts(before: SocketEntry, after: SocketEntry) -> bool:
    """Whether `after` differs from `before` in its counters at most (not its key, state,
    direction, owner, inode, uid, interface or container), so that its counters alone
    describe it."""
    return (
        before.state == after.state
        and before.inode == after.inode
        and before.uid == after.uid
        and before.direction is after.direction
        and before.interface == after.interface
        and before.container == after.container
        and (before.key is after.key or before.key == after.key)
        and (before.process is after.process or before.process == after.process)
    )


def _same_socket(before: SocketEntry, after: SocketEntry) -> bool:
    """The same kernel socket read again (an inode names it), so its handle is unchanged."""
    return bool(before.inode) and before.inode == after.inode and before.key == after.key


def _named(entries: Sequence[SocketEntry], inodes: list[Any]) -> list[Any]:
    """Handles for entries without an inode: their key as text, numbered when repeated."""
    out: list[Any] = []
    seen: dict[str, int] = {}
    for e, inode in zip(entries, inodes, strict=True):
        if inode:
            out.append(inode)
            continue
        k = e.key
        name = f"{k.transport.value} {k.local} {k.remote} {e.inode}"
        n = seen[name] = seen.get(name, 0) + 1
        out.append(name if n == 1 else f"{name} #{n}")
    return out


def _conversation(item: Any) -> tuple[Transport, Endpoint, Endpoint]:
    t, lip, lport, rip, rport = item
    return (
        Transport(t),
        Endpoint(ipaddress.ip_address(lip), int(lport)),
        Endpoint(ipaddress.ip_address(rip), int(rport)),
    )


class Collector:
    """Serves one analyzer on `channel` until it goes away."""

    def __init__(
        self,
        channel: Channel,
        *,
        config_file: Path | None,
        watch_starts: bool,
        socket_path: Path | None = None,
        sampler: SocketSampler | None = None,
        host: HostFactsReader | None = None,
    ) -> None:
        self.channel = channel
        self.config_file = config_file
        self.sampler = sampler or SocketSampler(namespaces=Namespaces(enter=False))
        self.host = host or HostFactsReader(links=False)  # the analyzer reads links itself
        self.starts: ConnectionOwners | None = None
        self._watch_starts = watch_starts
        self._hooks: CgroupHooks | None = None
        self._diff = TableDiff()
        self._parsed: dict[tuple[Any, ...], tuple[Transport, Endpoint, Endpoint]] = {}
        self._status: dict[str, Any] | None = None
        self._nat: tuple[Any, ...] = ()
        self._homes: tuple[Any, ...] = ()
        self.socket_path = socket_path
        self._socket_id: tuple[int, int] | None = None

    def open_hooks(self) -> None:
        """Load and attach the cgroup socket hooks while the capabilities are still held
        (CAP_BPF/CAP_SYS_ADMIN to load, CAP_NET_ADMIN to attach); only their file
        descriptors and mapped ring are kept, which need none (`sources.cgroup_bpf`)."""
        if self._watch_starts:
            self._hooks = open_hooks()

    def start_watcher(self) -> None:
        """Start the connection-start watcher (its thread gets this thread's credentials)."""
        if self._watch_starts:
            # Without it, attribution falls back to the socket samples alone.
            with contextlib.suppress(CaptureUnavailableError, NetlinkUnavailableError):
                self.starts = ConnectionOwners(hooks=self._hooks).start(hooks=False)
            self._hooks = None  # the watcher owns them now (or closed them when it failed)

    def serve(self) -> None:
        """Answer requests until the analyzer closes the channel."""
        while True:
            try:
                request = self.channel.recv()
            except ChannelClosedError:
                return
            self.channel.send(self.answer(request))

    def answer(self, request: Any) -> dict[str, Any]:
        """The answer to one request (an unknown request gets an `error`)."""
        op = request.get("op") if isinstance(request, dict) else None
        if op == "sample":
            return self._table(self.sampler.sample())
        if op == "refresh":
            table = self.sampler.refresh(self._conversations(request))
            return self._table(table, self.sampler.patched(table))
        if op == "facts":
            facts = self.host.facts(float(request["now"]), [str(e) for e in request["exes"]])
            return {"facts": codec.host_facts_to_dict(facts)}
        if op == "config":
            return self._config()
        if op == "socket":
            self._socket_id = (int(request["dev"]), int(request["ino"]))
            return {}
        return {"error": f"unknown request {op!r}"}

    def _conversations(self, request: dict[str, Any]) -> list[tuple[Transport, Endpoint, Endpoint]]:
        """The active conversations of a refresh request, parsed once per conversation (the
        same sockets are active tick after tick; the memory is bounded)."""
        memo = self._parsed
        if len(memo) > CONVERSATION_MEMO:
            memo.clear()
        out = []
        for item in request.get("active", ()):
            key = tuple(item) if isinstance(item, list) else None
            found = memo.get(key) if key is not None else None
            if found is None:
                found = _conversation(item)
                if key is not None:
                    memo[key] = found
            out.append(found)
        return out

    def _table(
        self,
        table: SocketTable,
        patched: tuple[tuple[SocketEntry, ...], list[int]] | None = None,
    ) -> dict[str, Any]:
        out = self._diff.message(table, patched)
        if table.nat != self._nat:  # containers' translated connections (netns helper)
            self._nat = table.nat
            out["nat"] = codec.nat_to_list(table.nat)
        if table.homes != self._homes:  # containers' own addresses, sent when they change
            self._homes = table.homes
            out["homes"] = codec.homes_to_list(table.homes)
        status = codec.status_to_dict(self.sampler.status())
        if status != self._status:
            out["status"] = self._status = status
        starts = self.starts
        if starts is not None:
            starts.hint(table)
            found = starts.drain()
            if found:
                out["starts"] = [[codec.key_to_dict(k), codec.process_to_dict(p)] for k, p in found]
            out["start_stats"] = starts.stats().wire()
        return out

    def _config(self) -> dict[str, Any]:
        path = self.config_file
        if path is None:
            return {"path": None, "text": None}
        try:
            if not path.is_file():
                return {"path": str(path), "text": None}
            return {"path": str(path), "text": path.read_text(encoding="utf-8")}
        except (OSError, UnicodeDecodeError) as exc:
            return {"path": str(path), "problem": f"{path}: cannot read: {exc}"}

    def close(self) -> None:
        """Stop the watcher and close the sampler's sockets."""
        if self.starts is not None:
            self.starts.stop()
        if self._hooks is not None:
            self._hooks.close()
        self.sampler.close()
        path, made = self.socket_path, self._socket_id
        if path is not None and made is not None:
            with contextlib.suppress(OSError):
                st = path.lstat()
                if stat.S_ISSOCK(st.st_mode) and (st.st_dev, st.st_ino) == made:
                    path.unlink()


def run_collector(
    sock: socket.socket,
    config_file: Path | None,
    watch_starts: bool,
    socket_path: Path | None,
    containers: bool = True,
) -> int:
    """The collector child's whole life: give up privileges, serve, exit (the exit code).

    Called right after the fork, before any thread exists. SIGTERM and SIGINT end it quietly
    (systemd sends SIGTERM to both processes; a terminal's Ctrl-C reaches both); SIGHUP is
    the analyzer's (reload) and ignored here. It also ends when the analyzer does: the kernel
    sends SIGTERM when its parent dies, and the socketpair reads end of stream.
    """
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.set_wakeup_fd(-1)
    channel = Channel(sock)
    try:
        collector = Collector(
            channel,
            config_file=config_file,
            watch_starts=watch_starts,
            socket_path=socket_path,
            sampler=SocketSampler(namespaces=Namespaces(enter=False) if containers else False),
        )
        with watcher_priority():  # raised while CAP_SYS_NICE is still held; kept by its threads
            collector.open_hooks()  # before the capabilities to load them go
            keep_only(COLLECTOR_CAPS)
            die_with_parent(signal.SIGTERM)
            collector.start_watcher()
    except Exception as exc:  # noqa: BLE001  # one line to the analyzer's log, then exit 1
        log.error("collector cannot start: %s", exc)
        with contextlib.suppress(ChannelClosedError):
            channel.send({"error": f"collector cannot start: {exc}"})
        return 1
    with contextlib.suppress(ChannelClosedError):
        channel.send({"ready": True, "caps": sorted(COLLECTOR_CAPS)})
    try:
        collector.serve()
    except ChannelClosedError:
        pass
    finally:
        collector.close()
    return 0
