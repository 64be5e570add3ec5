"""The analyzer's view of the collector: the engine's sources, fed over the socketpair.

`CollectorLink` owns the analyzer's end of the channel (`sources.channel`) and implements
what the engine asks of its sources (docs/architecture.md, section 7):

* `RemoteSockets` is a `RefreshingSource`: each `sample`/`refresh` asks the collector and
  applies its upserts and removals to the table it holds. An entry that did not change is
  the very object it was last tick (so are processes, sent once by number), as the local
  sampler keeps them, so the stages' caches behave as they do in one process.
* `RemoteStarts` stands in for `ConnectionOwners` in `CaptureFlows`: the owners the
  collector's start watcher found come with each table answer and are kept here as long as
  the watcher itself keeps them.
* `RemoteHostFacts` is the engine's `HostFactsSource`, asked for again as seldom as
  `HostFactsReader` rereads (a minute, or a new SoftEther program).
* `config_text()` is the daemon's config file read by the collector (for SIGHUP).

Any failure of the channel raises `ChannelClosedError` (a `NetwatchError`): the daemon logs one
line and exits non-zero, and systemd restarts both halves.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from netwatch import codec
from netwatch.errors import ConfigError
from netwatch.model import (
    ConnectionView,
    Endpoint,
    FlowKey,
    HostFacts,
    IPAddress,
    ProcessRef,
    SocketEntry,
    SocketTable,
    SourceStatus,
    Transport,
)
from netwatch.sources.channel import Channel, ChannelClosedError
from netwatch.sources.connect_owners import StartStats
from netwatch.sources.hostfacts import REFRESH_SECONDS
from netwatch.sources.routes import RouteLookup, with_links
from netwatch.sources.sockets import new_stamp

ANSWER_TIMEOUT = 30.0
"""Seconds the analyzer waits for an answer before it gives the collector up (a full
sample of 100,000 sockets takes about a second)."""


class CollectorLink:
    """The analyzer's end of the socketpair, with the state the answers build up."""

    def __init__(self, channel: Channel, pid: int | None = None) -> None:
        self.channel = channel
        self.pid = pid
        """The collector's process id (the detector exempts netwatch's own traffic)."""
        self.sockets = RemoteSockets(self)
        self.starts = RemoteStarts()

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        """One request and its answer; an error answer raises `ChannelClosedError`."""
        try:
            answer = self.channel.ask(request)
        except ChannelClosedError as exc:
            raise ChannelClosedError(f"the privileged collector is gone: {exc}") from None
        if not isinstance(answer, dict):
            raise ChannelClosedError("the collector's answer is not an object")
        if "error" in answer:
            raise ChannelClosedError(str(answer["error"]))
        return answer

    def wait_ready(self) -> None:
        """Wait for the collector's first word: ready, or why it could not start."""
        try:
            answer = self.channel.recv()
        except ChannelClosedError as exc:
            raise ChannelClosedError(f"the privileged collector did not start: {exc}") from None
        if not isinstance(answer, dict) or not answer.get("ready"):
            error = answer.get("error") if isinstance(answer, dict) else None
            raise ChannelClosedError(str(error or "the privileged collector did not start"))

    def config_text(self) -> tuple[str | None, str | None]:
        """(path, text) of the daemon's config file as the collector reads it now (text
        None: the file does not exist); raises `ConfigError` if it cannot be read."""
        answer = self.ask({"op": "config"})
        if "problem" in answer:
            raise ConfigError(str(answer["problem"]))
        path, text = answer.get("path"), answer.get("text")
        return (None if path is None else str(path), None if text is None else str(text))

    def own_socket(self, dev: int, ino: int) -> None:
        """Tell the collector which file the dashboards' socket is (it removes it at exit)."""
        self.ask({"op": "socket", "dev": dev, "ino": ino})

    def close(self) -> None:
        """Close the channel: the collector reads end of stream and exits."""
        self.channel.close()


class RemoteSockets:
    """A `RefreshingSource` whose tables the collector samples."""

    def __init__(self, link: CollectorLink) -> None:
        self._link = link
        self._entries: dict[Any, SocketEntry] = {}
        self._procs: dict[int, ProcessRef] = {}
        self._wire: dict[tuple[Transport, Endpoint, Endpoint], list[Any]] = {}
        """Active conversations as a refresh request sends them, formatted once each."""
        self._keys: codec.KeyCache = {}
        """Decoded keys of the sockets sent so far (`codec.socket_entry_from_list`)."""
        self._status = SourceStatus(mode="local")
        self._table: SocketTable | None = None
        self._nat: tuple[tuple[ConnectionView, ConnectionView], ...] = ()
        self._homes: tuple[tuple[int, tuple[IPAddress, ...]], ...] = ()

    def sample(self) -> SocketTable:
        """A full sample, taken by the collector."""
        return self._apply(self._link.ask({"op": "sample"}))

    def refresh(self, active: Iterable[tuple[Transport, Endpoint, Endpoint]]) -> SocketTable:
        """The last table with these conversations' sockets read again by the collector.

        With nothing to read again the collector is not asked: the answer is the table held,
        as the local sampler's is its last table (a quiet tick costs neither process a
        wake-up). The start watcher's owners and counters then come with the next answer,
        at the latest the next full sample; an owner is only looked up for a flow capture
        saw packets on, and such a tick asks."""
        if self._table is not None and not active:
            return self._table
        memo = self._wire
        if len(memo) > 65536:
            memo.clear()
        wanted = []
        for conversation in active:
            item = memo.get(conversation)
            if item is None:
                t, local, remote = conversation
                item = memo[conversation] = [
                    t.value, str(local.ip), local.port, str(remote.ip), remote.port
                ]  # fmt: skip
            wanted.append(item)
        return self._apply(self._link.ask({"op": "refresh", "active": wanted}))

    def status(self) -> SourceStatus:
        """What the collector can see (its privileges, not the analyzer's)."""
        return self._status

    def _apply(self, answer: dict[str, Any]) -> SocketTable:
        try:
            table = self._decode(answer)
        except (codec.CodecError, KeyError, TypeError, ValueError) as exc:
            raise ChannelClosedError(f"the collector sent a bad socket table: {exc}") from None
        self._link.starts.update(answer)
        return table

    def _decode(self, answer: dict[str, Any]) -> SocketTable:
        if answer.get("full"):
            self._entries = {}
        if answer.get("procs_reset"):
            self._procs = {}
        procs = self._procs
        for handle, d in answer.get("procs", ()):
            ref = codec.process_from_dict(d)
            if ref is not None:
                procs[int(handle)] = ref
        entries = self._entries
        keys = self._keys
        if len(keys) > 2 * len(entries) + 1024:  # bounded: keys of gone sockets go
            keys.clear()
        upserts = answer.get("upserts", ())
        removed = answer.get("removed", ())
        counters = answer.get("counters", ())
        for handle in removed:
            entries.pop(handle, None)
        # A new stamp per changed entry, as the local sampler gives a changed socket: the
        # flow stage knows an unchanged socket by its stamp (an unstamped entry would be
        # rebuilt, enriched and judged again every tick).
        for handle, items in upserts:
            entries[handle] = codec.socket_entry_from_list(items, procs, keys, new_stamp())
        for items in counters:  # re-read sockets whose facts are the entry held
            handle, entry = codec.socket_entry_with_counters(items, entries, new_stamp())
            entries[handle] = entry  # in its old entry's place: the dict keeps the order
        if "status" in answer:
            self._status = codec.status_from_dict(answer["status"])
        nat = self._nat
        if "nat" in answer:  # containers' translated connections, sent when they change
            nat = self._nat = codec.nat_from_list(answer["nat"])
        homes = self._homes
        if "homes" in answer:  # containers' own addresses, sent when they change
            homes = self._homes = codec.homes_from_list(answer["homes"])
        taken_at = float(answer["taken_at"])
        last = self._table
        if (
            last is not None
            and not (upserts or removed or counters)
            and last.taken_at == taken_at
            and last.homes is homes
        ):
            return last  # a refresh that changed nothing: the sampler's very table
        values = tuple(entries.values())
        if last is not None and not (upserts or removed or answer.get("full")):
            # Only counters changed: every socket is where it was, with its key and owner.
            self._table = last.reread(taken_at, values, nat, homes)
        else:
            self._table = SocketTable(taken_at=taken_at, entries=values, nat=nat, homes=homes)
        return self._table

    def close(self) -> None:
        """Nothing to release here (the link owns the channel)."""


class RemoteStarts:
    """`CaptureFlows`' connection-start owners, as the collector's watcher found them."""

    def __init__(self, keep: float = 600.0, max_kept: int = 8192) -> None:
        self.keep = keep
        self.max_kept = max_kept
        self._found: OrderedDict[FlowKey, tuple[ProcessRef, float]] = OrderedDict()
        self._stats = StartStats(0, 0, 0)

    def update(self, answer: dict[str, Any]) -> None:
        """Take the owners and counters that came with a table answer."""
        now = time.monotonic()
        found = self._found
        for key_d, proc_d in answer.get("starts", ()):
            key, ref = codec.key_from_dict(key_d), codec.process_from_dict(proc_d)
            if key is not None and ref is not None:
                found[key] = (ref, now)
                found.move_to_end(key)
        while found and (
            len(found) > self.max_kept or next(iter(found.values()))[1] < now - self.keep
        ):
            found.popitem(last=False)
        if "start_stats" in answer:
            self._stats = StartStats.from_wire(answer["start_stats"])

    def owner(self, key: FlowKey) -> ProcessRef | None:
        """The process that opened `key` (this host first), if its start was caught."""
        hit = self._found.get(key)
        return None if hit is None else hit[0]

    def hint(self, table: SocketTable) -> None:
        """The collector hints its own watcher with each sample; nothing to do here."""

    def stats(self) -> StartStats:
        """The watcher's counters as of the last table answer."""
        return self._stats

    def stop(self) -> None:
        """The watcher stops with the collector."""


class RemoteHostFacts:
    """The engine's `HostFactsSource`, read by the collector."""

    def __init__(self, link: CollectorLink, refresh: float = REFRESH_SECONDS) -> None:
        self._link = link
        self.refresh = refresh
        self._last: HostFacts | None = None
        self._exes: frozenset[str] = frozenset()
        self._routes = RouteLookup()
        """Interfaces and default routes need no privilege: this side reads them every tick
        (a tunnel going down shows at once), the collector only the SoftEther files."""

    def facts(self, now: float, exes: Iterable[str] = ()) -> HostFacts:
        """The host facts, asked for again when old or when the set of programs changed
        (the collector's `HostFactsReader` decides whether that means reading again)."""
        wanted = exes if isinstance(exes, frozenset) else frozenset(exes)
        last = self._last
        if last is None or wanted != self._exes or now - last.taken_at >= self.refresh:
            answer = self._link.ask({"op": "facts", "now": now, "exes": sorted(wanted)})
            try:
                last = codec.host_facts_from_dict(answer["facts"])
            except (codec.CodecError, KeyError, TypeError) as exc:
                raise ChannelClosedError(f"the collector sent bad host facts: {exc}") from None
            self._exes = wanted
        self._last = with_links(last, self._routes)
        return self._last
