"""The honest share: of the last minute's bytes and flows, how many have a known process.

Each tick hands over its flows; a flow's bytes count by how much its counters grew since the
flow was last seen (a flow first seen counts all its bytes; counters that went down mean a
new flow on the same key, counted from zero), in the class its owner has now: known (found
from a socket, a cache or its start), guessed (`Attribution.GUESSED`), or unknown. A flow
counts once in the window, in the class it had when last seen. Pure: the caller passes the
time. A tick whose flows all have last tick's versions (the change contract: nothing moved,
no owner changed) costs one C-speed comparison, so 1,000 idle connections add nothing per
tick; otherwise a dictionary look-up per flow.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Sequence

from netwatch.model import Attribution, EnrichedFlow, Flow, FlowKey, NamedShare
from netwatch.model.versions import UNNUMBERED, Version, versions

KNOWN, GUESSED, UNKNOWN = 0, 1, 2
WINDOW = 60.0
"""Seconds the share looks back over."""


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
        """Flow -> (when last seen, its class then), least recently seen first."""
        self._bytes: deque[tuple[float, int, int]] = deque()
        """(tick time, class, bytes) for each tick and class that moved bytes."""
        self._totals = [0, 0, 0]
        self._counts = [0, 0, 0]
        self._versions: list[Version] | None = None
        self._pass = float("-inf")
        """When the flows were last walked: every flow seen then was in that tick."""

    def observe(self, flows: Sequence[EnrichedFlow], now: float) -> NamedShare:
        """Take one tick's flows; the share over the window ending `now`."""
        tick = versions(flows)
        if tick == self._versions:
            # Last tick's flows, unchanged: still seen now, and no byte moved.
            return self._expire(now, min(now - self.window, self._pass), [0, 0, 0])
        self._versions = None if UNNUMBERED in tick else tick
        self._pass = now
        moved = [0, 0, 0]
        seen = self._flows
        counts = self._counts
        last = self._last
        current: dict[FlowKey, tuple[int, int]] = {}
        for f in (ef.flow for ef in flows):
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
        return self._expire(now, now - self.window, moved)

    def _expire(self, now: float, horizon: float, moved: list[int]) -> NamedShare:
        """Drop flows last seen before `horizon` and bytes older than the window; add
        `moved` (this tick's bytes per class); the share."""
        seen, counts, last = self._flows, self._counts, self._last
        while seen:
            key, (at, klass) = next(iter(seen.items()))
            if at >= horizon:
                break
            seen.popitem(last=False)
            counts[klass] -= 1
            last.pop(key, None)
        totals = self._totals
        for klass, n in enumerate(moved):
            if n:
                self._bytes.append((now, klass, n))
                totals[klass] += n
        while self._bytes and self._bytes[0][0] < now - self.window:
            _, klass, n = self._bytes.popleft()
            totals[klass] -= n
        return NamedShare(*totals, *counts)
