"""The honest share: of the last minute's bytes and flows, how many have a known process.

Each tick hands over its flows; a flow's bytes count by how much its counters grew since the
flow was last seen (a flow first seen counts all its bytes; counters that went down mean a
new flow on the same key, counted from zero), in the class its owner has now: known (found
from a socket, a cache or its start), guessed (`Attribution.GUESSED`), or unknown. A flow
counts once in the window, in the class it had when last seen. Pure: the caller passes the
time. A tick whose flows all have last tick's versions (the change contract: nothing moved,
no owner changed) costs one C-speed comparison, so 1,000 idle connections add nothing per
tick; otherwise only the flows with a new version are looked at (`model.versions.Filed`).
"""

from __future__ import annotations

import operator
from collections import OrderedDict, deque
from collections.abc import Sequence

from netwatch.model import Attribution, EnrichedFlow, Flow, FlowKey, NamedShare
from netwatch.model.versions import Filed, TickChanges

KNOWN, GUESSED, UNKNOWN = 0, 1, 2
WINDOW = 60.0
"""Seconds the share looks back over."""
_FLOW = operator.attrgetter("flow")
_KEY = operator.attrgetter("key")


def owner_class(flow: Flow) -> int:
    """`KNOWN`, `GUESSED` or `UNKNOWN`: how well the flow's process is known."""
    if flow.process is None or flow.attribution is Attribution.UNKNOWN:
        return UNKNOWN
    if flow.attribution is Attribution.GUESSED:
        return GUESSED
    return KNOWN


class ShareWindow:
    """Bytes and flows of the last `window` seconds by owner class (see module doc)."""

    def __init__(self, window: float = WINDOW) -> None:
        self.window = window
        self._last: dict[FlowKey, tuple[int, int]] = {}
        """Each flow's byte counters (sent + received, packets' and sockets' alike) when last
        seen, so growth is counted once."""
        self._flows: OrderedDict[FlowKey, tuple[float, int]] = OrderedDict()
        """Flow -> (when last looked at, its class then), least recently looked at first. A
        flow of last tick's version is not looked at again: it is still in the tick, which
        `_expire` asks before it drops an entry."""
        self._bytes: deque[tuple[float, int, int]] = deque()
        """(tick time, class, bytes) for each tick and class that moved bytes."""
        self._totals = [0, 0, 0]
        self._counts = [0, 0, 0]
        self._filed: Filed[FlowKey] = Filed()
        """Last tick's flows by version: a flow of one of them moved no byte and kept its
        owner."""
        self._tick_at = float("-inf")
        """When the last tick was taken."""

    def observe(
        self, flows: Sequence[EnrichedFlow], now: float, given: TickChanges | None = None
    ) -> NamedShare:
        """Take one tick's flows; the share over the window ending `now`.

        Only flows whose version is new since last tick are looked at (the change contract:
        an equal version has equal counters and owner), so a tick where 100 of 20,000 flows
        moved costs 100 look-ups; `given`: the engine's changes of this tick (else worked
        out here, walking every flow in C)."""
        changes = self._filed.changes(flows, given)
        new = changes.new
        keys = [flows[i].flow.key for i in new]
        # Last tick's flows not in this one, as they were: last seen then (a flow looked at
        # long ago and unchanged since was in every tick up to that one).
        seen = self._flows
        for key in self._filed.file(changes, keys):
            old = seen.get(key)
            if old is not None and old[0] < self._tick_at:
                seen.move_to_end(key)
                seen[key] = (self._tick_at, old[1])
        self._tick_at = now
        moved = [0, 0, 0]
        counts = self._counts
        last = self._last
        current: dict[FlowKey, tuple[int, int]] = {}
        for f in (flows[i].flow for i in new):
            klass = owner_class(f)
            key = f.key
            sent, received = f.bytes_sent or 0, f.bytes_received or 0
            prev_sent, prev_received = current.get(key) or last.get(key, (0, 0))
            current[key] = (sent, received)
            moved[klass] += (sent - prev_sent if sent >= prev_sent else sent) + (
                received - prev_received if received >= prev_received else received
            )
            old = seen.pop(key, None)
            if old is not None:
                counts[old[1]] -= 1
            seen[key] = (now, klass)
            counts[klass] += 1
        # Flows gone from the tick keep their last counters for a window (a flow that comes
        # back under the same key within it counts only its growth).
        last.update(current)
        return self._expire(now, moved, flows)

    def _expire(self, now: float, moved: list[int], flows: Sequence[EnrichedFlow]) -> NamedShare:
        """Drop flows last seen before the window and bytes older than it; add `moved`
        (this tick's bytes per class); the share. An entry due that is still in `flows`
        (unchanged since it was looked at) is seen now, and goes to the end."""
        seen, counts, last = self._flows, self._counts, self._last
        horizon = now - self.window
        present: set[FlowKey] | None = None
        while seen:
            key, (at, klass) = next(iter(seen.items()))
            if at >= horizon:
                break
            if present is None:
                present = set(map(_KEY, map(_FLOW, flows)))
            if key in present:
                seen.move_to_end(key)
                seen[key] = (now, klass)
                continue
            seen.popitem(last=False)
            counts[klass] -= 1
            last.pop(key, None)
        totals = self._totals
        for klass, n in enumerate(moved):
            if n:
                self._bytes.append((now, klass, n))
                totals[klass] += n
        while self._bytes and self._bytes[0][0] < horizon:
            _, klass, n = self._bytes.popleft()
            totals[klass] -= n
        return NamedShare(*totals, *counts)
