"""Delivers announced alerts to the live sinks (files, syslog) from one background thread.

The loop only enqueues; a slow or dead syslog server therefore never delays a tick. The queue
is bounded: when it is full the alert is counted in `dropped` (it is already in the store, so
`netwatch export` still has it). The flow log (`export.flowlog` records) has a worker of its
own, so a burst of ended conversations never crowds alerts out of their queue.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Sequence
from typing import Generic, TypeVar

from netwatch.export.sinks import Sink

log = logging.getLogger("netwatch.daemon")


_Item = TypeVar("_Item")


class SinkWorker(Generic[_Item]):
    """One thread, one bounded queue, many sinks."""

    def __init__(
        self, sinks: Sequence[Sink[_Item]], maxsize: int = 10_000, name: str = "netwatch-sinks"
    ) -> None:
        self._sinks = list(sinks)
        self._queue: queue.Queue[_Item | None] = queue.Queue(maxsize)
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        if self._sinks:
            self._thread.start()

    def put(self, item: _Item, wait: float = 0.0) -> None:
        """Queue an alert (or flow record) for every sink; never blocks in the loop (`wait`
        0). At shutdown a caller may wait up to `wait` seconds for room instead."""
        if not self._sinks:
            return
        try:
            if wait > 0:
                self._queue.put(item, timeout=wait)
            else:
                self._queue.put_nowait(item)
        except queue.Full:
            self.dropped += 1

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            for sink in self._sinks:
                try:
                    sink.emit(item)
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
