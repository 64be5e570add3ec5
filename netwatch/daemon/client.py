"""`DaemonFeed`: the dashboard's `SnapshotFeed` over the daemon's Unix socket.

Reads JSON lines, decodes them through `codec`, and yields snapshots. When the daemon goes
away (restart, upgrade) it reconnects with exponential backoff until `close()`; `status`
says in words what the feed is doing so the UI can show it. Lines that do not decode are
skipped and counted (a newer daemon may add record types), never raised into the UI.
"""

from __future__ import annotations

import contextlib
import json
import logging
import select
import socket
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from netwatch import codec, paths
from netwatch.daemon.encoding import ALERTS_FIELD, FLOWS_FIELD
from netwatch.daemon.server import socket_answers
from netwatch.model import Alert, EnrichedFlow, Snapshot

log = logging.getLogger("netwatch.daemon.client")

MAX_LINE = 64 * 1024 * 1024
_JSON = json.JSONDecoder()
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
        """Snapshots passed over because newer ones had arrived (their alerts were kept)."""
        self.reused = 0
        """Snapshots whose flows were the last one's, byte for byte, and were not decoded."""
        self._body = b""
        self._flows: tuple[EnrichedFlow, ...] = ()
        """Last line's flows text and what it decoded to."""
        self._texts: dict[str, EnrichedFlow] = {}
        """Each flow of the last line by its own text."""

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
                self.status = "daemon closed the connection; reconnecting"
                if self._closed.wait(delay):
                    return

    def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(2.0)
        try:
            sock.connect(str(self.path))
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        self._sock = sock
        self.connects += 1
        return sock

    def _read(self, sock: socket.socket) -> Iterator[Snapshot]:
        """Snapshots as they arrive; when the consumer fell behind, only the newest.

        Everything the socket holds is read before decoding, and of several complete lines
        only the last is decoded in full: the dashboard wants the latest state, and at
        10,000 flows a line is ~14 MB and takes longer to decode than a tick lasts. The
        alerts of the lines passed over are carried into the next snapshot yielded (they
        are the only part of a snapshot that is news rather than state), and the daemon
        keeps seeing a client that reads, instead of dropping it as too slow.
        """
        buf = bytearray()
        carried: list[Alert] = []
        while not self._closed.is_set():
            try:
                ready, _, _ = select.select([sock], [], [], 0.5)
            except (OSError, ValueError):
                return  # closed from another thread
            if not ready:
                continue
            if not self._drain(sock, buf):
                return
            lines = buf.split(b"\n")
            buf[:] = lines.pop()  # the unfinished rest
            if len(buf) > MAX_LINE:
                self.bad_lines += 1
                return
            if not lines:
                continue
            for skipped in lines[:-1]:
                carried.extend(self._alerts_of(bytes(skipped)))
            self.skipped += len(lines) - 1
            snap = self._decode(bytes(lines[-1]))
            if snap is None:
                continue
            if carried:
                snap = replace(snap, alerts=(*carried, *snap.alerts))
                carried = []
            yield snap

    def _drain(self, sock: socket.socket, buf: bytearray) -> bool:
        """Append all the socket holds now to `buf`; False once the daemon has gone."""
        while len(buf) <= MAX_LINE:
            try:
                data = sock.recv(1 << 20)
            except (BlockingIOError, InterruptedError):
                return True
            except OSError:
                return False
            if not data:
                return False
            buf += data
        return True

    def _alerts_of(self, line: bytes) -> tuple[Alert, ...]:
        """The alerts of a snapshot line, without decoding its flows."""
        start, end = _flows_span(line)
        try:
            head = codec.loads(_without_flows(line, start, end)) if 0 < start < end else None
        except (codec.CodecError, ValueError, RecursionError):
            head = None
        if not isinstance(head, Snapshot):
            self.bad_lines += 1
            return ()
        return head.alerts

    def _decode(self, line: bytes) -> Snapshot | None:
        """The snapshot of one line, decoding only the flows whose text changed.

        Building flow objects is most of a decode (49 of 56 ms at 2,000 flows; the JSON
        parse is 7). When the flows' text (`_flows_span`) is last line's, byte for byte (a
        quiet tick: one memcmp), last snapshot's flows are reused whole; otherwise each flow
        whose own text is unchanged keeps its object (`_flows_of`). Any other layout is
        decoded whole.
        """
        start, end = _flows_span(line)
        try:
            if not 0 < start < end:
                record = codec.loads(line)
                return record if isinstance(record, Snapshot) else None
            record = codec.loads(_without_flows(line, start, end))
            if not isinstance(record, Snapshot):
                return None
            body = memoryview(line)[start + len(FLOWS_FIELD) : end]
            if body == self._body:
                self.reused += 1
                flows = self._flows
            else:
                flows = self._flows_of(bytes(body).decode("utf-8"))
                self._body, self._flows = bytes(body), flows
        except (codec.CodecError, ValueError, IndexError, RecursionError) as exc:
            self.bad_lines += 1
            log.debug("skipped a line from the daemon: %s", exc)
            return None
        return replace(record, flows=flows)

    def _flows_of(self, text: str) -> tuple[EnrichedFlow, ...]:
        """Decode a JSON array of flow records, reusing last line's flow for each element
        whose text is the same (raises ValueError, IndexError or CodecError if malformed)."""
        known, texts = self._texts, {}
        out: list[EnrichedFlow] = []
        pos, end = 1, len(text) - 1
        if text[0] != "[" or text[end] != "]":
            raise ValueError("flows are not a JSON array")
        while pos < end:
            obj, after = _JSON.raw_decode(text, pos)
            span = text[pos:after]
            ef = known.get(span)
            if ef is None:
                ef = codec.flow_from_dict(obj)
            texts[span] = ef
            out.append(ef)
            pos = after
            if text[pos] == ",":
                pos += 1
            elif pos != end:
                raise ValueError(f"expected ',' at {pos} in the flows")
        self._texts = texts
        return tuple(out)

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


def _flows_span(line: bytes) -> tuple[int, int]:
    """Where the `flows` field of a snapshot line starts and where it ends (-1 if absent).

    The daemon writes the head's fields, then `flows`, then `alerts` last (`SnapshotEncoder`,
    as `codec.dumps`); a key's quotes cannot occur unescaped inside a JSON string, and no
    head field holds a list named `flows`, so the first `,"flows":[` and the last
    `,"alerts":[` bound the flows' text.
    """
    return line.find(FLOWS_FIELD + b"["), line.rfind(ALERTS_FIELD + b"[")


def _without_flows(line: bytes, start: int, end: int) -> bytes:
    """The line with an empty flows list: the head and alerts decode on their own."""
    return line[:start] + FLOWS_FIELD + b"[]" + line[end:]
