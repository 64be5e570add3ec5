"""Fair shares for the connection-start watcher: repeats, per-conversation token buckets, causes.

The watcher (`sources.connect_owners`) has a small CPU budget for finding who opened each
connection. Without shares, one program that floods (16,000 datagrams to port 53, or a SYN
storm) spends it all, and the starts of every other program in those seconds go unnamed:
a way to hide traffic behind noise. So each start passes this gate before any lookup:

* a start of a flow seen moments ago (the same 5-tuple: one socket sending query after query
  to its resolver) is a repeat, not a new start: nothing to look up, nothing missed;
* each conversation class (transport and remote address and port) has its own token bucket
  (`rate` a second, up to `burst` at once): a flood to one destination uses up its own bucket
  and is refused (counted missed for `budget`), while another program's starts to anywhere
  else still find tokens. 60 connections in a row to one server fit the default burst.

Pure (the caller passes the time); the per-cause counts it keeps are what `status` and
Prometheus show. A flood spread over many destinations is refused only by the watcher's overall
CPU cap; its SYN and DNS starts are read from separate packet sockets, so a DNS flood never
fills the queue a SYN waits in (see `connect_owners`).
"""

from __future__ import annotations

from collections import OrderedDict
from enum import StrEnum


class Verdict(StrEnum):
    """What the gate says about one start."""

    NEW = "new"
    """Look it up."""
    REPEAT = "repeat"
    """The same flow started moments ago: already looked up (or refused)."""
    REFUSED = "refused"
    """Its conversation class spent its tokens: missed, for `budget`."""


class Cause(StrEnum):
    """Why a start's process was not found as it started."""

    BUDGET = "budget"
    """Refused by its conversation's share, or the CPU budget ran out during the search."""
    GONE = "gone"
    """The socket or its process was gone by the time it was looked up."""
    QUEUE = "queue"
    """Dropped unread: queued while the watcher was over its CPU cap, or dropped by the kernel."""


class StartGate:
    """Repeat detection and per-class token buckets (see module doc)."""

    def __init__(
        self,
        *,
        rate: float = 20.0,
        burst: float = 64.0,
        repeat_window: float = 5.0,
        max_keys: int = 4096,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.repeat_window = repeat_window
        self.max_keys = max_keys
        self._flows: OrderedDict[bytes, float] = OrderedDict()
        """Flow identity -> when its start was last seen, oldest first."""
        self._buckets: OrderedDict[bytes, tuple[float, float]] = OrderedDict()
        """Class key -> (tokens, when last filled), least recently used first."""
        self.repeats = 0
        self.refused = 0

    def admit(self, flow: bytes, klass: bytes, now: float) -> Verdict:
        """The verdict on a start of `flow` (any bytes naming its 5-tuple) in class `klass`."""
        flows = self._flows
        last = flows.get(flow)
        flows[flow] = now
        flows.move_to_end(flow)
        while len(flows) > self.max_keys:
            flows.popitem(last=False)
        if last is not None and now - last < self.repeat_window:
            self.repeats += 1
            return Verdict.REPEAT
        buckets = self._buckets
        tokens, filled = buckets.get(klass, (self.burst, now))
        tokens = min(self.burst, tokens + max(0.0, now - filled) * self.rate)
        admitted = tokens >= 1.0
        buckets[klass] = (tokens - 1.0 if admitted else tokens, now)
        buckets.move_to_end(klass)
        while len(buckets) > self.max_keys:
            buckets.popitem(last=False)
        if not admitted:
            self.refused += 1
            return Verdict.REFUSED
        return Verdict.NEW
