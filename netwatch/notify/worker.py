"""Delivery off the tick: one bounded queue and one thread per channel, drops counted.

The daemon's loop calls `Notifications.submit` with each announced alert; that is a
`put_nowait` per channel and nothing more, so a webhook that never answers or a desktop bus
that hangs costs a tick nothing: its queue fills, and what does not fit is counted in
`dropped` (the alert is in the store already). Selection, the rate limit and the digest run
in the channel's thread, which also wakes when a held digest is due.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Sequence
from typing import Protocol

from netwatch.clock import Clock
from netwatch.config import NotifySettings, Selection
from netwatch.model import Alert
from netwatch.notify.batch import Batcher, Chooser
from netwatch.notify.note import Note

log = logging.getLogger("netwatch.notify")


class Channel(Protocol):
    """Where notes go: a desktop, a webhook, a command."""

    name: str
    """What log lines call it (never a secret: a webhook's is its redacted URL)."""

    def send(self, note: Note) -> None:
        """Deliver one note; raise `OSError` or `ValueError` when it could not be."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


class ChannelWorker:
    """One channel's queue, chooser, batcher and thread.

    `start=False` leaves the thread out: a test then feeds the queue and calls `drain`
    with a fake clock.
    """

    def __init__(
        self,
        channel: Channel,
        selection: Selection,
        settings: NotifySettings,
        clock: Clock,
        *,
        start: bool = True,
    ) -> None:
        self.channel = channel
        self.clock = clock
        self.chooser = Chooser(selection, settings.selection)
        self.batcher = Batcher(settings.window, settings.burst)
        self.queue: queue.Queue[Alert | None] = queue.Queue(settings.queue)
        self.dropped = 0
        self.sent = 0
        self.failed = 0
        self.send_threads: set[str] = set()
        """Names of the threads `send` ran on (the daemon's tick thread must never be one)."""
        self._thread = threading.Thread(
            target=self._run, name=f"netwatch-notify-{channel.name.split(':')[0]}", daemon=True
        )
        if start:
            self._thread.start()

    def put(self, alert: Alert) -> None:
        """Queue an alert (never blocks; a full queue counts a drop)."""
        try:
            self.queue.put_nowait(alert)
        except queue.Full:
            self.dropped += 1
            if self.dropped == 1:  # once: the count is in `dropped` from then on
                log.warning(
                    "notifications via %s: queue full (%d), dropping alerts until it drains",
                    self.channel.name,
                    self.queue.maxsize,
                )

    def handle(self, alert: Alert | None, now: float) -> None:
        """Process one queued alert (None: only a due digest) at monotonic time `now`."""
        notes = self.batcher.due(now)
        if alert is not None and self.chooser.wants(alert):
            notes += self.batcher.offer(alert, now)
        for note in notes:
            self._send(note)

    def drain(self) -> None:
        """Handle everything queued now, on the caller's thread (tests, without `start`)."""
        while True:
            try:
                alert = self.queue.get_nowait()
            except queue.Empty:
                break
            self.handle(alert, self.clock.monotonic())
        self.handle(None, self.clock.monotonic())

    def _send(self, note: Note) -> None:
        self.send_threads.add(threading.current_thread().name)
        try:
            self.channel.send(note)
        except (OSError, ValueError) as exc:
            self.failed += 1
            log.warning("notification via %s failed: %s", self.channel.name, exc)
        else:
            self.sent += 1

    def _run(self) -> None:
        while True:
            due = self.batcher.next_due()
            wait = None if due is None else max(0.0, due - self.clock.monotonic())
            try:
                alert = self.queue.get(timeout=wait)
            except queue.Empty:
                alert = None
            else:
                if alert is None:  # close: what is held goes out now
                    if self.batcher.holding:
                        self._send(self.batcher.flush())
                    return
            self.handle(alert, self.clock.monotonic())

    def close(self, timeout: float = 2.0) -> None:
        """Send what is held (up to `timeout` s), then close the channel."""
        if self._thread.is_alive():
            with contextlib.suppress(queue.Full):
                self.queue.put(None, timeout=timeout)
            self._thread.join(timeout)
        self.channel.close()


class Notifications:
    """Every configured channel's worker; the daemon hands each announced alert here."""

    def __init__(self, workers: Sequence[ChannelWorker]) -> None:
        self.workers = list(workers)

    def submit(self, alert: Alert) -> None:
        """Queue `alert` on every channel (never blocks)."""
        for w in self.workers:
            w.put(alert)

    @property
    def dropped(self) -> int:
        """Alerts no channel queue had room for, summed over channels."""
        return sum(w.dropped for w in self.workers)

    def close(self) -> None:
        """Deliver what is queued and held, then close every channel."""
        for w in self.workers:
            w.close()
