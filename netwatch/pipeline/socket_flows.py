"""Socket table -> flows -> enriched flows, reusing last tick's objects for unchanged sockets.

The sampler hands back the very same `SocketEntry` object for a socket whose kernel record
(state, counters) and owner did not change. For those the engine reuses last tick's `Flow`
and, when the enricher answers with the same `RemoteInfo`, last tick's `EnrichedFlow`, so
the stages after it (detection, the daemon's JSON encoding) can recognise unchanged flows by
identity and skip them. A socket flow's `first_seen` is the sample that first listed that
socket (kept per key and inode); its `last_seen` is None: the socket is open as of the
snapshot's `taken_at`, which is also the time detection uses for it, as before.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from netwatch.flows.attribution import assign_directions, flow_from_socket
from netwatch.model import (
    Direction,
    EnrichedFlow,
    Flow,
    FlowKey,
    SocketEntry,
    SocketTable,
    Transport,
    same_objects,
)

_PORTED = (Transport.TCP, Transport.UDP, Transport.SCTP)

Enrich = Callable[[Flow], EnrichedFlow]


class SocketFlows:
    """Keeps last tick's entry -> flow -> enriched flow, by object identity, for one engine."""

    def __init__(self) -> None:
        self._flows: dict[int, tuple[SocketEntry, Flow]] = {}
        self._enriched: dict[int, EnrichedFlow] = {}
        self._first: dict[object, tuple[FlowKey, float | None]] = {}
        """inode (or key, for sockets without one) -> (key, first_seen) of last tick's sockets."""
        self.reused = 0
        """How many flows of the last tick were last tick's objects (tests, bench)."""
        self._entries_in: Sequence[SocketEntry] | None = None
        self._flows_out: list[Flow] = []
        self._flows_in: Sequence[Flow] | None = None
        self._enriched_out: tuple[EnrichedFlow, ...] = ()

    def flows(self, table: SocketTable, now: float) -> list[Flow]:
        """One flow per socket; a socket whose entry object is unchanged keeps its flow.

        Returns last tick's very list when every entry is last tick's (do not mutate it).
        """
        entries: Sequence[SocketEntry] = table.entries
        if same_objects(entries, self._entries_in):
            self.reused = len(self._flows_out)
            return self._flows_out
        self._entries_in = entries
        if any(e.direction is Direction.UNKNOWN and e.key.transport in _PORTED for e in entries):
            entries = assign_directions(entries)
        old, old_first = self._flows, self._first
        new: dict[int, tuple[SocketEntry, Flow]] = {}
        first: dict[object, tuple[FlowKey, float | None]] = {}
        out: list[Flow] = []
        reused = 0
        for e in entries:
            # The inode names a live socket (cheap to hash); TIME_WAIT and psutil rows have none.
            ident: object = e.inode or e.key
            hit = old.get(id(e))
            if hit is not None and hit[0] is e:
                flow = hit[1]
                reused += 1
            else:
                prev = old_first.get(ident)
                seen = prev[1] if prev is not None and prev[0] == e.key else now
                flow = flow_from_socket(e, now, seen, open_ended=True)
            new[id(e)] = (e, flow)
            first[ident] = (e.key, flow.first_seen)
            out.append(flow)
        self._flows, self._first, self.reused = new, first, reused
        self._flows_out = out
        return out

    def forget_enrichment(self) -> None:
        """Drop last tick's enriched flows (the enricher was replaced)."""
        self._enriched = {}
        self._flows_in = None

    def enrich(
        self, flows: Sequence[Flow], enrich: Enrich | None, stable: bool = False
    ) -> tuple[EnrichedFlow, ...]:
        """Enrich every flow; an unchanged flow with an unchanged answer keeps its object.

        `stable`: the enricher always answers the same for the same flow, so an unchanged
        flow is not even asked about again.
        """
        reuse = stable or enrich is None
        if reuse and same_objects(flows, self._flows_in):
            return self._enriched_out
        old = self._enriched
        new: dict[int, EnrichedFlow] = {}
        out: list[EnrichedFlow] = []
        for f in flows:
            prev = old.get(id(f))
            if prev is not None and prev.flow is f and (stable or enrich is None):
                ef = prev
            elif enrich is None:
                ef = EnrichedFlow(f)
            else:
                ef = enrich(f)
                if prev is not None and prev.flow is f and _same_remote(prev, ef):
                    ef = prev
            new[id(f)] = ef
            out.append(ef)
        self._enriched = new
        self._flows_in = flows if reuse else None
        self._enriched_out = tuple(out)
        return self._enriched_out


def _same_remote(a: EnrichedFlow, b: EnrichedFlow) -> bool:
    return a.remote is b.remote or a.remote == b.remote
