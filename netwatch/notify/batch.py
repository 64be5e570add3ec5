"""Which alerts a channel takes, and the rate limit that turns a burst into one digest (pure).

`Batcher` counts messages per window: up to `burst` single alerts go out at once; later
alerts in the same window are held and sent as one digest when the window ends (the digest
opens the next window and counts in it). So a burst of a hundred alerts is a handful of
messages, however long it lasts: at most `burst` singles, then one digest per window. Time
is handed in (monotonic seconds), so tests move a fake clock instead of sleeping.
"""

from __future__ import annotations

from collections import OrderedDict
from fnmatch import fnmatchcase

from netwatch.config import Selection
from netwatch.model import Action, Alert, AlertState, Severity
from netwatch.notify.note import Note, digest, single

HELD_MAX = 1000
"""Alerts a window's digest keeps; later ones are only counted."""

SEEN_MAX = 10_000
"""Alert ids remembered, so an alert updated on later ticks is not notified again."""


class Chooser:
    """Selection by rule glob and least severity; each alert id is taken once.

    The daemon announces an alert when it opens and again each tick it is updated or when it
    closes; a person wants to hear of it once. Logged alerts (`action = "log"`) are for the
    record, not for attention, so they are never notified.
    """

    def __init__(self, selection: Selection, default: Selection) -> None:
        self.rules = selection.rules or default.rules or ("*",)
        self.least = selection.min_severity or default.min_severity or Severity.INFO
        self._seen: OrderedDict[str, None] = OrderedDict()

    def wants(self, alert: Alert) -> bool:
        """Whether to notify `alert` (and remember that it was)."""
        if alert.state is not AlertState.OPEN or alert.action is not Action.ALERT:
            return False
        if alert.severity.rank < self.least.rank or alert.id in self._seen:
            return False
        if not any(fnmatchcase(alert.rule_id, g) for g in self.rules):
            return False
        self._seen[alert.id] = None
        if len(self._seen) > SEEN_MAX:
            self._seen.popitem(last=False)
        return True


class Batcher:
    """At most `burst` single messages per `window` seconds; the rest as one digest."""

    def __init__(self, window: float, burst: int) -> None:
        self.window = window
        self.burst = burst
        self._start: float | None = None
        self._sent = 0
        self._held: list[Alert] = []
        self._more = 0

    def offer(self, alert: Alert, now: float) -> list[Note]:
        """The notes to send now that `alert` came (a due digest first)."""
        out = self.due(now)
        if self._start is None:
            self._start, self._sent = now, 0
        if self._sent < self.burst:
            self._sent += 1
            out.append(single(alert))
        elif len(self._held) < HELD_MAX:
            self._held.append(alert)
        else:
            self._more += 1
        return out

    def due(self, now: float) -> list[Note]:
        """The digest of a window that has ended (its held alerts), if any."""
        if self._start is None or now < self._start + self.window:
            return []
        if not self._held:
            self._start = None
            return []
        note = self.flush()
        self._start, self._sent = now, 1
        return [note]

    def flush(self) -> Note:
        """The held alerts as one note now (call only when `holding`)."""
        held, more = self._held, self._more
        self._held, self._more = [], 0
        return digest(held, more) if len(held) > 1 or more else single(held[0])

    @property
    def holding(self) -> bool:
        """Whether alerts wait for the window's end."""
        return bool(self._held)

    def next_due(self) -> float | None:
        """When the held alerts go out (None: nothing held)."""
        if self._start is None or not self._held:
            return None
        return self._start + self.window
