"""`DaemonFeed`: the dashboard's `SnapshotFeed` over the daemon's Unix socket.

Reads the daemon's stream (`netwatch.stream`: a `state`, then one `delta` per tick) through
`codec.FrameReader` and `stream.StreamDecoder`, and yields snapshots. When the daemon goes
away (restart, upgrade) it reconnects with exponential backoff until `close()`; `status`
says in words what the feed is doing so the UI can show it. Lines that do not decode are
skipped and counted (a newer daemon may add record types), never raised into the UI; when a
delta cannot be applied (one was lost) the feed reconnects, and the daemon's greeting is a
fresh state.

`DaemonHistory` asks the same socket for the past (`netwatch.history_wire`): the history
screen's source when this user may attach but not read the daemon's store file.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from netwatch import codec, history_wire, paths
from netwatch.daemon.history import QUERY_TIME
from netwatch.daemon.server import socket_answers
from netwatch.errors import NetwatchError
from netwatch.history_wire import HistoryValue, Request
from netwatch.model import Alert, EnrichedFlow, Snapshot
from netwatch.model.usage import Away, UsageAnswer, UsageQuery
from netwatch.stream import OutOfStepError, StreamDecoder

log = logging.getLogger("netwatch.daemon.client")

MAX_LINE = codec.MAX_FRAME
READ_BATCH = 4 * 1024 * 1024
"""Bytes read from the socket before the records they hold are applied."""
SERVICE_SOCKET = Path("/run/netwatch/netwatch.sock")
"""Where the systemd unit's daemon listens (RuntimeDirectory=netwatch)."""


def find_daemon_socket(explicit: Path | None = None) -> Path | None:
    """The socket of a running daemon, or None: `explicit`, this user's default, the service's.

    For the dashboard's choice between attaching and sampling itself; a member of the
    `netwatch` group finds the system service's socket even though its own default differs.
    """
    candidates = [explicit] if explicit else [paths.default_socket(), SERVICE_SOCKET]
    for path in candidates:
        if path is not None and socket_answers(path):
            return path
    return None


def connect_unix(path: Path, timeout: float = 2.0) -> socket.socket:
    """A stream socket connected to the daemon's socket at `path` within `timeout` (the
    socket is closed again when connecting fails, and the `OSError` raised)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(path))
    except OSError:
        sock.close()
        raise
    return sock


class DaemonFeed:
    """Snapshots from a running daemon; implements `netwatch.feed.SnapshotFeed`."""

    def __init__(
        self,
        path: Path,
        *,
        backoff: float = 0.2,
        max_backoff: float = 5.0,
        max_attempts: int | None = None,
    ) -> None:
        self.path = path
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._max_attempts = max_attempts
        self._closed = threading.Event()
        self._sock: socket.socket | None = None
        self.status = "connecting"
        self.bad_lines = 0
        self.connects = 0
        self.skipped = 0
        """Records applied without being yielded, because newer ones had arrived (their
        alerts were carried into the next snapshot yielded)."""
        self.reused = 0
        """Snapshots yielded whose flows were the last one's very tuple (a quiet tick)."""
        self.resyncs = 0
        """Times a delta could not be applied and the feed reconnected for a fresh state."""
        self._decoder = StreamDecoder()
        """Kept across reconnects: a new state reuses the flow objects it already holds."""
        self._flows: tuple[EnrichedFlow, ...] | None = None
        self._lost = False
        """The connection's stream lost step (`OutOfStepError`)."""

    def snapshots(self) -> Iterator[Snapshot]:
        """Yield snapshots until `close()`; reconnects with backoff when the daemon is gone."""
        delay = self._backoff
        failures = 0
        while not self._closed.is_set():
            try:
                sock = self._connect()
            except OSError as exc:
                failures += 1
                self.status = f"daemon not reachable at {self.path}: {exc.strerror or exc}"
                if self._max_attempts is not None and failures >= self._max_attempts:
                    return
                if self._closed.wait(delay):
                    return
                delay = min(delay * 2, self._max_backoff)
                continue
            self.status = "connected"
            for snap in self._read(sock):
                failures, delay = 0, self._backoff
                yield snap
            self._drop()
            if not self._closed.is_set():
                if self._lost:
                    self.status = "a delta was lost; reconnecting for a fresh state"
                else:
                    self.status = "daemon closed the connection; reconnecting"
                if self._closed.wait(delay):
                    return

    def _connect(self) -> socket.socket:
        sock = connect_unix(self.path)
        sock.setblocking(False)
        self._sock = sock
        self.connects += 1
        return sock

    def _read(self, sock: socket.socket) -> Iterator[Snapshot]:
        """Snapshots as they arrive; when the consumer fell behind, only the newest.

        Everything the socket holds is read and every record applied (a delta cannot be
        skipped: each says what changed since the one before, and applying one costs what
        changed), but only the newest snapshot is built and yielded. The alerts of the
        records passed over are carried into it (they are news, not state), and the daemon
        keeps seeing a client that reads. A delta that does not follow (one was lost, or a
        line was damaged) ends the connection: the daemon greets the next with a state.
        """
        reader = codec.FrameReader(MAX_LINE)
        self._decoder.restart()
        self._lost = False
        while not self._closed.is_set():
            try:
                ready, _, _ = select.select([sock], [], [], 0.5)
            except (OSError, ValueError):
                return  # closed from another thread
            if not ready:
                continue
            data, alive = self._drain(sock)
            bad = reader.bad
            records = reader.feed(data)
            self.bad_lines += reader.bad - bad
            alerts = self._apply(records)
            if alerts:
                snap = self._decoder.snapshot()
                if snap.flows is self._flows:
                    self.reused += 1
                self._flows = snap.flows
                self.skipped += len(alerts) - 1
                if len(alerts) > 1:
                    carried = [a for tick in alerts[:-1] for a in tick]
                    snap = replace(snap, alerts=(*carried, *snap.alerts))
                yield snap
            if not alive or self._lost:
                return

    def _apply(self, records: list[codec.JSONDict]) -> list[tuple[Alert, ...]]:
        """Apply `records` in order; the alerts of each one applied. Stops at a delta that
        does not follow (`_lost`); other bad records are counted and passed over."""
        alerts: list[tuple[Alert, ...]] = []
        for record in records:
            try:
                self._decoder.apply(record)
            except OutOfStepError as exc:
                self.bad_lines += 1
                self.resyncs += 1
                self._lost = True
                log.debug("lost step with the daemon: %s", exc)
                break
            except codec.CodecError as exc:
                self.bad_lines += 1
                log.debug("skipped a line from the daemon: %s", exc)
                continue
            alerts.append(self._decoder.alerts)
        return alerts

    def _drain(self, sock: socket.socket) -> tuple[bytes, bool]:
        """What the socket holds now, up to `READ_BATCH`; and False once the daemon has gone."""
        parts: list[bytes] = []
        size = 0
        while size < READ_BATCH:
            try:
                data = sock.recv(1 << 20)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                return b"".join(parts), False
            if not data:
                return b"".join(parts), False
            parts.append(data)
            size += len(data)
        return b"".join(parts), True

    def _drop(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    def close(self) -> None:
        """Stop: the iterator returns within half a second; safe from any thread."""
        self._closed.set()
        sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


ANSWER_WAIT = QUERY_TIME + 5.0
"""Seconds `DaemonHistory` waits for an answer: the daemon's time limit and some margin."""


class DaemonHistory:
    """The history screen's source over the daemon's socket (`ui.screens.history.
    HistorySource`), for a user who may attach but not read the daemon's store file.

    One connection, opened on the first request, kept for the next ones and opened again
    when it broke; requests go one at a time (the screen's two workers share it). The
    request is sent right after connecting, so the daemon does not greet it with a `state`;
    any stream records that still arrive are passed over. An error line from the daemon, an
    older daemon that does not answer, or a gone one are each one `NetwatchError` line.
    """

    def __init__(self, path: Path, away_since: float | None, *, wait: float = ANSWER_WAIT) -> None:
        self.path = path
        self.away_since = away_since
        self.wait = wait
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._reader = codec.FrameReader(MAX_LINE)
        self._ids = 0

    def usage(self, query: UsageQuery) -> UsageAnswer:
        """Totals for `query`, from the daemon."""
        got = self._ask(Request(0, "usage", query=query))
        return got if isinstance(got, UsageAnswer) else UsageAnswer([], [], False)

    def bounds(self) -> tuple[int, int] | None:
        """[start, end) of the daemon's stored history."""
        got = self._ask(Request(0, "bounds"))
        return got if isinstance(got, tuple) else None

    def away(self) -> Away | None:
        """New programs, countries and alerts since the dashboard was last attached."""
        if self.away_since is None:
            return None
        got = self._ask(Request(0, "away", since=self.away_since))
        return got if isinstance(got, Away) else None

    def _ask(self, req: Request) -> HistoryValue:
        with self._lock:
            self._ids += 1
            req = replace(req, id=self._ids)
            try:
                return self._exchange(req)
            except OSError as exc:
                self.close()
                raise NetwatchError(
                    f"history from the daemon at {self.path}: {exc.strerror or exc}"
                ) from None

    def _exchange(self, req: Request) -> HistoryValue:
        sock = self._sock
        if sock is None:
            sock = connect_unix(self.path)
            self._sock, self._reader = sock, codec.FrameReader(MAX_LINE)
        sock.settimeout(self.wait)
        sock.sendall(codec.frame(history_wire.request(req)))
        deadline = time.monotonic() + self.wait
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.close()
                raise NetwatchError(
                    "the daemon did not answer the history request (an older daemon?)"
                )
            sock.settimeout(left)
            try:
                data = sock.recv(1 << 20)
            except TimeoutError:
                continue
            if not data:
                self.close()
                raise NetwatchError("the daemon closed the connection (an older daemon?)")
            for record in self._reader.feed(data):
                if history_wire.is_answer_to(record, req):
                    return history_wire.answer_from_record(record, req)

    def close(self) -> None:
        """Close the connection (the next request opens another)."""
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()
