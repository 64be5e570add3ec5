"""Socket table -> flows -> enriched flows, numbered, reusing last tick's for unchanged sockets.

Who initiated each socket is decided here, not by the sampler (whose entries are the kernel's
view, direction `unknown`): from the listening sockets of the whole table
(`flows.attribution.infer_direction`), for new or changed sockets only, and again for the
sockets on a port whose listeners changed, so an unchanged socket costs nothing.

The sampler hands on a socket whose kernel record (state, counters) and owner did not change
with its entry's `stamp`. For those this stage reuses last tick's `Flow` (found by stamp),
and, when the flow's revisions and the enricher's answer are unchanged, last tick's
`EnrichedFlow`; a changed socket's flow gets its serial from the engine's serial book and
revisions that move only for the parts that changed (`flows.serials`), so the stages after
it (detection, the daemon) recognise unchanged flows by their version. A socket flow's
`first_seen` is the sample that first listed that socket (kept per key and inode); without
capture, a connected socket's `interface` is where the kernel routes its remote address
(`egress`, `egress_by = "route"`), asked when the socket is new or changed; its
`last_seen` is None: the socket is open as of the snapshot's `taken_at`, which is also the
time detection uses for it, as before.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import cast

from netwatch.flows.attribution import (
    AllListeners,
    Listeners,
    all_listeners,
    flow_from_socket,
    infer_direction,
    listeners_for,
)
from netwatch.flows.serials import SerialBook, fresh_rev, numbered
from netwatch.model import (
    Direction,
    EnrichedFlow,
    Flow,
    FlowKey,
    IPAddress,
    RemoteInfo,
    SocketEntry,
    SocketTable,
)
from netwatch.model.versions import same_objects

_REMOTE_OF = operator.attrgetter("key.remote")
_LOCAL_PORT_OF = operator.attrgetter("key.local.port")
_NONES = itertools.repeat(None)
_INODE_OF = operator.attrgetter("inode")
_KEY_OF = operator.attrgetter("key")
_SERIAL_OF = operator.attrgetter("serial")
_STAMP_OF = operator.attrgetter("stamp")
_SERIAL_OF_EF = operator.attrgetter("flow.serial")
_FLOW_VERSION = operator.attrgetter("serial", "rev_facts", "rev_traffic")
_UNNUMBERED = (0, 0, 0)

Enrich = Callable[[Flow], EnrichedFlow]
Egress = Callable[[IPAddress], str | None]
"""The interface a packet to an address leaves by (the kernel's route lookup, `sources.routes`)."""


class SocketFlows:
    """Keeps last tick's entry -> flow -> enriched flow, by stamp and version, for one engine."""

    def __init__(self, serials: SerialBook | None = None, egress: Egress | None = None) -> None:
        self.serials = SerialBook() if serials is None else serials
        self.egress = egress
        """Without capture, where each connected socket's traffic leaves (`Flow.interface`,
        `egress_by = "route"`), asked once per new or changed socket; None: not asked."""
        """Where each socket's conversation gets its serial (shared with the packet flows)."""
        self._flows: dict[int, Flow] = {}
        """Last tick's entries' stamps (`SocketEntry.stamp`) -> their flows."""
        self._stamps_in: list[int] | None = None
        self._enriched: dict[tuple[int, int, int], EnrichedFlow] | None = {}
        """Last tick's enriched flows by their flow's (serial, rev_facts, rev_traffic); None
        after an in-place tick until a tick needs it (`_cache`)."""
        self._mark = 0
        """A revision drawn after last tick's enrichment: a flow with a revision at or past
        it cannot have been among last tick's (`_enriched_in_place`)."""
        self._versions_in: list[tuple[int, int, int]] | None = None
        self._flows_in: tuple[Flow, ...] | None = None
        """The flows `_versions_in` were read from (`model.versions.same_objects`)."""
        self.unchanged = False
        """Whether the last `enrich` handed back last tick's tuple whole (every version equal)."""
        self.reused = 0
        """How many flows of the last tick were last tick's (tests, bench)."""
        self._entries_in: Sequence[SocketEntry] = ()
        self._flows_out: list[Flow] = []
        self._enriched_out: tuple[EnrichedFlow, ...] = ()
        self._unconnected: list[int] = []
        """The stamps of last tick's unconnected sockets (the only ones that can listen)."""
        self._listeners: AllListeners = ({}, {})

    def flows(self, table: SocketTable, now: float) -> list[Flow]:
        """One flow per socket; a socket whose entry has last tick's stamp keeps its flow.

        Returns last tick's list when every entry has last tick's stamp (do not mutate it).
        Matching entries to last tick's flows runs in C: `_flows` is keyed by entry stamp.
        A changed socket's flow is numbered (`flows.serials`): its serial from the book, and
        revisions that move only for the parts that changed.
        """
        entries: Sequence[SocketEntry] = table.entries
        if entries is self._entries_in and self._stamps_in is not None:
            self.reused = len(self._flows_out)
            return self._flows_out  # the very table's entries: nothing was read again
        if table.reread_of is not None and table.reread_of is self._entries_in:
            done = self._in_place(entries, now)
            if done is not None:
                return done
        stamps = list(map(_STAMP_OF, entries))
        if stamps == self._stamps_in:
            self.reused = len(self._flows_out)
            return self._flows_out
        listeners, moved = self._listeners_now(entries)
        got: list[Flow | None] = list(map(self._flows.get, stamps))
        misses = missing_at(got)
        if moved:  # a listener opened or closed: reused flows on its port may change direction
            ports = map(_LOCAL_PORT_OF, entries)
            for i in itertools.compress(range(len(entries)), map(moved.__contains__, ports)):
                f = got[i]
                if f is not None:
                    d = _direction(entries[i], listeners)
                    if d is not f.direction:
                        got[i] = replace(f, direction=d, rev_facts=fresh_rev())
        if misses:
            # A changed socket keeps the first_seen of its last flow: found by inode (a live
            # socket), or by key for sockets without one (TIME_WAIT, psutil rows).
            last, flows = self._entries_in, self._flows_out
            by_inode = dict(zip(map(_INODE_OF, last), flows, strict=True))
            # By key only if an entry lacks an inode: hashing every key runs Python per
            # socket (~2 ms a tick at 20,000 sockets), by inode stays in C.
            by_key: dict[FlowKey, Flow] | None = None
            by_serial = dict(zip(map(_SERIAL_OF, flows), flows, strict=True))
            serial_of = self.serials.serial
            for i in misses:
                e = entries[i]
                if e.inode:
                    prev = by_inode.get(e.inode)
                else:
                    if by_key is None:
                        by_key = dict(zip(map(_KEY_OF, last), flows, strict=True))
                    prev = by_key.get(e.key)
                seen = prev.first_seen if prev is not None and prev.key == e.key else now
                flow = flow_from_socket(e, now, seen, True, _direction(e, listeners))
                if self.egress is not None and e.key.remote is not None:
                    flow = _routed(flow, self.egress)
                serial = serial_of(_conversation(e))
                got[i] = numbered(flow, serial, by_serial.get(serial))
        out = cast(list[Flow], got)
        self._flows = dict(zip(stamps, out, strict=True))
        stray = self._flows.pop(0, None) is not None  # unstamped entries: never taken as known
        self._stamps_in = None if stray else stamps
        self._entries_in, self._flows_out = entries, out
        self.reused = len(out) - len(misses)
        return out

    def _in_place(self, entries: Sequence[SocketEntry], now: float) -> list[Flow] | None:
        """`flows` for a table re-read in place from last tick's (`SocketTable.reread_of`):
        only the positions whose entry is new are looked at, each against last tick's flow
        at that position (the same socket: same key, inode, owner). None when that does not
        apply (an unconnected or unstamped socket among them, or last tick's table held
        unstamped ones): the caller takes the whole-table path.

        The whole-table path walks every socket several times in C to find last tick's flows
        by stamp, inode and serial (about 0.6 ms a tick at 2,000 sockets, 6 at 20,000); here
        one C pass finds the positions, and the flows they keep are last tick's, in place.
        It gives what that path gives: an unchanged listener set (no unconnected socket
        moved), and last tick's flow of the socket is the one at its position.
        """
        last, stamps_in = self._entries_in, self._stamps_in
        if stamps_in is None or len(entries) != len(last):
            return None
        moved = list(itertools.compress(range(len(entries)), map(operator.is_not, entries, last)))
        for i in moved:
            e = entries[i]
            if e.key.remote is None or not e.stamp or not e.inode or e.inode != last[i].inode:
                return None
        out, stamps = list(self._flows_out), list(stamps_in)
        by_stamp, listeners = self._flows, self._listeners
        serial_of = self.serials.serial
        for i in moved:
            e, prev = entries[i], out[i]
            seen = prev.first_seen if prev.key == e.key else now
            flow = flow_from_socket(e, now, seen, True, _direction(e, listeners))
            if self.egress is not None:
                flow = _routed(flow, self.egress)
            serial = serial_of(_conversation(e))
            flow = out[i] = numbered(flow, serial, prev)
            by_stamp.pop(stamps[i], None)
            by_stamp[e.stamp] = flow
            stamps[i] = e.stamp
        self._stamps_in, self._entries_in, self._flows_out = stamps, entries, out
        self.reused = len(out) - len(moved)
        return out

    def _listeners_now(self, entries: Sequence[SocketEntry]) -> tuple[AllListeners, frozenset[int]]:
        """This table's listeners, and the ports whose listeners differ from last tick's.

        Only unconnected sockets can listen; they are picked out in C, and looked at in
        Python only when their stamps are not last tick's. Unconnected UDP sockets (DNS
        lookups) come and go every tick, so only flows on a changed port are re-judged.
        """
        remotes = map(_REMOTE_OF, entries)
        unconnected = list(itertools.compress(entries, map(operator.is_, remotes, _NONES)))
        stamps = list(map(_STAMP_OF, unconnected))
        if stamps == self._unconnected and 0 not in stamps:
            return self._listeners, frozenset()
        listeners, before = all_listeners(unconnected), self._listeners
        moved = _moved(before[0], listeners[0])
        for ns in before[1].keys() | listeners[1].keys():  # containers' own listeners
            moved |= _moved(before[1].get(ns, {}), listeners[1].get(ns, {}))
        self._unconnected, self._listeners = stamps, listeners
        return listeners, frozenset(moved)

    def forget_enrichment(self) -> None:
        """Drop last tick's enrichment answers (the enricher was replaced)."""
        self._enriched = {}
        self._versions_in = None
        self._flows_in = None

    def enrich(
        self, flows: Sequence[Flow], enrich: Enrich | None, stable: bool = False
    ) -> tuple[EnrichedFlow, ...]:
        """Enrich every flow; `rev_remote` moves only when a serial's answer changed.

        Last tick's enriched flows are found by the flow's (serial, rev_facts, rev_traffic),
        in C. `stable`: the enricher always answers the same for the same flow, so a flow
        with last tick's revisions is not even asked about again, and when every flow has
        last tick's revisions the whole tuple is last tick's. Flows without a serial (0:
        not numbered) are never taken for another.
        """
        reuse = stable or enrich is None
        last_in = self._flows_in
        if reuse and last_in is not None and same_objects(flows, last_in):
            self.unchanged = True  # last tick's very flows: last tick's versions
            return self._enriched_out
        if reuse and last_in is not None and len(flows) == len(last_in):
            enriched = self._enriched_in_place(flows, last_in, enrich)
            if enriched is not None:
                return enriched
        versions = list(map(_FLOW_VERSION, flows))
        if reuse and versions == self._versions_in:
            self.unchanged = True
            self._flows_in = tuple(flows)
            return self._enriched_out
        self.unchanged = False
        last_out, cache = self._enriched_out, self._cache()
        by_serial: dict[int, EnrichedFlow] | None = None
        got: list[EnrichedFlow | None] = list(map(cache.get, versions))
        for i in range(len(got)) if not reuse else missing_at(got):
            f = flows[i]
            ef = EnrichedFlow(f) if enrich is None else enrich(f)
            prev = got[i]
            if prev is None:
                if by_serial is None:  # once per tick, in C, only when something changed
                    by_serial = dict(zip(map(_SERIAL_OF_EF, last_out), last_out, strict=True))
                prev = by_serial.get(f.serial) if f.serial else None
            got[i] = _answered(f, ef.remote, prev)
        out = tuple(cast(list[EnrichedFlow], got))
        self._enriched = dict(zip(versions, out, strict=True))
        stray = self._enriched.pop(_UNNUMBERED, None) is not None
        self._versions_in = None if stray else versions
        self._flows_in = None if stray else tuple(flows)
        self._enriched_out = out
        self._mark = fresh_rev()
        return out

    def _enriched_in_place(
        self, flows: Sequence[Flow], last_in: tuple[Flow, ...], enrich: Enrich | None
    ) -> tuple[EnrichedFlow, ...] | None:
        """`enrich` (with reuse) for flows of last tick's count: position by position.

        A flow that is the very object at its position last tick keeps last tick's answer
        there (one C pass). Each other flow is what the whole-table path would make of it:
        last tick's answer for its version (asked of the version index only when its
        revisions are old enough to have been there: revisions are drawn from one counter,
        and `_mark` was drawn after last tick's), else a new answer against last tick's
        flow of its serial (the one at its position when that has its serial). So a tick
        where 100 of 2,000 flows moved reads 100 versions, not 2,000, and hashes none of
        last tick's (about 0.6 ms a tick at 2,000 flows). None: an unnumbered flow is
        among them (never taken for another), and the caller takes the whole-table path.
        """
        last_out = self._enriched_out
        same = map(operator.is_, flows, last_in)
        got: list[EnrichedFlow | None] = [
            o if s else None for s, o in zip(same, last_out, strict=True)
        ]
        misses = missing_at(got)
        if not all(flows[i].serial for i in misses):
            return None
        mark = self._mark
        cache: dict[tuple[int, int, int], EnrichedFlow] | None = None
        by_serial: dict[int, EnrichedFlow] | None = None
        for i in misses:
            f = flows[i]
            if f.rev_traffic < mark and f.rev_facts < mark:  # maybe one of last tick's
                cache = self._cache() if cache is None else cache
                hit = cache.get(_FLOW_VERSION(f))
                if hit is not None:
                    got[i] = hit
                    continue
            ef = EnrichedFlow(f) if enrich is None else enrich(f)
            prev: EnrichedFlow | None = last_out[i]
            if prev is not None and prev.flow.serial != f.serial:
                if by_serial is None:
                    by_serial = dict(zip(map(_SERIAL_OF_EF, last_out), last_out, strict=True))
                prev = by_serial.get(f.serial)  # None: a conversation new this tick
            got[i] = _answered(f, ef.remote, prev)
        if same_objects(got, last_out):  # every version last tick's, in order
            self.unchanged = True
            self._flows_in = tuple(flows)
            return last_out
        out = tuple(cast(list[EnrichedFlow], got))
        self.unchanged = False
        self._flows_in, self._enriched_out = tuple(flows), out
        self._enriched, self._versions_in = None, None  # made from these when next needed
        self._mark = fresh_rev()
        return out

    def _cache(self) -> dict[tuple[int, int, int], EnrichedFlow]:
        """Last tick's enriched flows by their flow's version (made from last tick's flows
        and answers when the in-place path left it unmade)."""
        if self._enriched is None:
            assert self._flows_in is not None  # noqa: S101  # left unmade only with its flows
            cache = dict(zip(map(_FLOW_VERSION, self._flows_in), self._enriched_out, strict=True))
            cache.pop(_UNNUMBERED, None)
            self._enriched = cache
        return self._enriched


def _conversation(entry: SocketEntry) -> object:
    """What names the socket's conversation in the serial book: its key, and for an
    unconnected socket its inode too (several may share a port: SO_REUSEPORT)."""
    key = entry.key
    return key if key.remote is not None else (key, entry.inode)


def _moved(before: Listeners, now: Listeners) -> set[int]:
    """The ports whose listeners differ."""
    return {
        port for (t, port) in before.keys() | now.keys()
        if before.get((t, port)) != now.get((t, port))
    }  # fmt: skip


def _direction(entry: SocketEntry, listeners: AllListeners) -> Direction:
    """The entry's direction when its source knew it, else judged from the listeners of
    its own namespace."""
    if entry.direction is not Direction.UNKNOWN:
        return entry.direction
    return infer_direction(entry.key, entry.state, listeners_for(entry, listeners))


def _routed(flow: Flow, egress: Egress) -> Flow:
    """The flow with the interface its remote address is routed by (loopback is `lo`)."""
    remote = flow.key.remote
    if remote is None or remote.ip.is_loopback:
        return flow
    iface = egress(remote.ip)
    return flow if iface is None else replace(flow, interface=iface, egress_by="route")


def _answered(flow: Flow, remote: RemoteInfo | None, prev: EnrichedFlow | None) -> EnrichedFlow:
    """The enriched flow, keeping `prev`'s `rev_remote` (the same serial's last answer) when
    the answer is equal, and `prev` itself when the flow's revisions are equal too."""
    if prev is None or not flow.serial or prev.flow.serial != flow.serial:
        return EnrichedFlow(flow, remote, fresh_rev())
    if not (prev.remote is remote or prev.remote == remote):
        return EnrichedFlow(flow, remote, fresh_rev())
    p = prev.flow
    if p.rev_facts == flow.rev_facts and p.rev_traffic == flow.rev_traffic:
        return prev
    return EnrichedFlow(flow, remote, prev.rev_remote)


def missing_at(found: Sequence[object | None]) -> list[int]:
    """The positions of None in `found` (walked in C)."""
    return list(itertools.compress(range(len(found)), map(operator.is_, found, _NONES)))
