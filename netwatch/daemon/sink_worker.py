"""Delivers announced alerts to the live sinks (files, syslog) from one background thread.

The loop only enqueues; a slow or dead syslog server therefore never delays a tick. The queue
is bounded: when it is full the alert is counted in `dropped` (it is already in the store, so
`netwatch export` still has it).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Sequence

from netwatch.export.sinks import Sink
from netwatch.model import Alert

log = logging.getLogger("netwatch.daemon")


class SinkWorker:
    """One thread, one bounded queue, many sinks."""

    def __init__(self, sinks: Sequence[Sink], maxsize: int = 10_000) -> None:
        self._sinks = list(sinks)
        self._queue: queue.Queue[Alert | None] = queue.Queue(maxsize)
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="netwatch-sinks", daemon=True)
        if self._sinks:
            self._thread.start()

    def put(self, alert: Alert) -> None:
        """Queue an alert for every sink (never blocks)."""
        if not self._sinks:
            return
        try:
            self._queue.put_nowait(alert)
        except queue.Full:
            self.dropped += 1

    def _run(self) -> None:
        while True:
            alert = self._queue.get()
            if alert is None:
                return
            for sink in self._sinks:
                try:
                    sink.emit(alert)
                except Exception as exc:  # noqa: BLE001  # one bad sink must not stop the others
                    log.warning("sink %s failed: %s", type(sink).__name__, exc)

    def close(self, timeout: float = 2.0) -> None:
        """Deliver what is queued (up to `timeout` s), then close the sinks."""
        if self._sinks:
            with contextlib.suppress(queue.Full):
                self._queue.put(None, timeout=timeout)
            self._thread.join(timeout)
        for sink in self._sinks:
            sink.close()
