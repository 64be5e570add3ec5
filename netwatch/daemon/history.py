"""The daemon's answers to history requests (`netwatch.history_wire`): off the tick path.

A client asks on the dashboard socket (`SnapshotServer` hands each request record here);
the request is decoded at once in the loop (bounded: a line is at most
`history_wire.MAX_REQUEST` bytes), and a malformed one is answered with an error record at
once. A good one waits in a bounded queue (`QUEUE` in all, `PER_CLIENT` per client; past
either: an error record, "busy") for the one worker thread, which runs it on its own
read-only connection to the store (`store.sqlite.Reader`, opened with the store before the
daemon gives up root) with a time limit (`QUERY_TIME`, SQLite's progress
handler) at a lower CPU priority (nice +10), so a slow query never delays a tick or the
other clients: the loop only moves the finished answer's bytes. Answers are bounded by the
wire module (`MAX_ROWS`, `MAX_ANSWER`). The worker wakes the loop's `poll` through a
socketpair when an answer is ready.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections import deque
from typing import TYPE_CHECKING

from netwatch import codec, history_wire
from netwatch.errors import NetwatchError
from netwatch.history_wire import HistoryValue, Request

if TYPE_CHECKING:
    from netwatch.store.sqlite import Reader

log = logging.getLogger("netwatch.daemon")

QUERY_TIME = 5.0
"""Seconds one query may run before SQLite interrupts it (the client gets an error line)."""
QUEUE = 16
"""Requests waiting for the worker, from all clients."""
PER_CLIENT = 2
"""Requests one client may have waiting or running."""
NICE = 10
"""The worker thread's niceness: the tick's threads come first for the CPU."""


class HistoryWorker:
    """Runs history requests against the store file in one background thread."""

    def __init__(self, store: Reader, *, time_limit: float = QUERY_TIME) -> None:
        self.store = store
        self.time_limit = time_limit
        self.answered = 0
        self.refused = 0
        """Requests answered with an error before running: malformed, or the queue full."""
        self._jobs: deque[tuple[int, Request]] = deque()
        self._done: deque[tuple[int, bytes]] = deque()
        self._inflight: dict[int, int] = {}
        self._cv = threading.Condition()
        self._stop = False
        self._thread: threading.Thread | None = None
        self.wakeup, self._wake = socket.socketpair()
        """`wakeup` becomes readable when an answer is ready (the server's poll watches it)."""
        self.wakeup.setblocking(False)
        self._wake.setblocking(False)

    def submit(self, client: int, record: codec.JSONDict) -> bytes | None:
        """Take one request record of `client`: None when queued, or the framed error record
        to send it at once (malformed, or too many waiting)."""
        try:
            req = history_wire.request_from_record(record)
        except codec.CodecError as exc:
            self.refused += 1
            return history_wire.error(history_wire.request_id(record), exc.message)
        with self._cv:
            if len(self._jobs) >= QUEUE or self._inflight.get(client, 0) >= PER_CLIENT:
                self.refused += 1
                return history_wire.error(req.id, "busy: too many history requests waiting")
            self._inflight[client] = self._inflight.get(client, 0) + 1
            self._jobs.append((client, req))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="netwatch-history", daemon=True
                )
                self._thread.start()
            self._cv.notify()
        return None

    def take(self) -> list[tuple[int, bytes]]:
        """The answers finished since the last call: (client, framed record)."""
        with contextlib.suppress(BlockingIOError, InterruptedError, OSError):
            self.wakeup.recv(4096)
        out = []
        while self._done:
            out.append(self._done.popleft())
        return out

    def forget(self, client: int) -> None:
        """`client` went away: drop its waiting requests (a running one finishes unsent)."""
        with self._cv:
            kept = [(c, r) for c, r in self._jobs if c != client]
            if len(kept) != len(self._jobs):
                self._jobs = deque(kept)
                self._inflight.pop(client, None)

    def _run(self) -> None:
        with contextlib.suppress(OSError):  # per-thread niceness (Linux): a hint, not a need
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)
        while True:
            with self._cv:
                while not self._jobs and not self._stop:
                    self._cv.wait()
                if self._stop:
                    return
                client, req = self._jobs.popleft()
            line = self._answer(req)
            with self._cv:
                left = self._inflight.get(client, 1) - 1
                if left > 0:
                    self._inflight[client] = left
                else:
                    self._inflight.pop(client, None)
            self._done.append((client, line))
            self.answered += 1
            with contextlib.suppress(BlockingIOError, InterruptedError, OSError):
                self._wake.send(b"\0")

    def _answer(self, req: Request) -> bytes:
        """Run one request; every failure is its error record, never the thread's end."""
        value: HistoryValue
        try:
            if req.op == "usage" and req.query is not None:
                value = self.store.usage(req.query, self.time_limit, history_wire.MAX_GROUPS)
            elif req.op == "away" and req.since is not None:
                value = self.store.away(req.since, self.time_limit)
            else:
                value = self.store.bounds(self.time_limit)
            return history_wire.answer(req, value)
        except NetwatchError as exc:
            return history_wire.error(req.id, str(exc).replace(str(self.store.path), "the store"))
        except Exception as exc:  # noqa: BLE001  # a bug must cost one answer, not the worker
            log.exception("history request %d failed", req.id)
            return history_wire.error(req.id, f"internal error: {type(exc).__name__}")

    def close(self) -> None:
        """Stop the worker (a running query ends within its time limit) and close the pair."""
        with self._cv:
            self._stop = True
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(self.time_limit + 1.0)
        self.wakeup.close()
        self._wake.close()
