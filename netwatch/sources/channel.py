"""The socketpair between the daemon's collector and analyzer: one JSON object per line.

Both ends block; the analyzer's reads time out (`Channel(timeout=...)`) so a stuck
collector can never hang the daemon. The framing is `frame` / `unframe`, the only two
functions that know it, so the codec's own framing (issue 12, the delta protocol) can
replace it in one place.
"""

from __future__ import annotations

import json
import socket
from typing import Any

from netwatch.errors import NetwatchError

MAX_LINE = 256 * 1024 * 1024
"""A line longer than this is not from our collector (a first table of 100,000 sockets is
~25 MB)."""


class ChannelClosedError(NetwatchError):
    """The other process closed its end, died, stopped answering or sent garbage."""


def frame(message: Any) -> bytes:
    """One message as bytes on the wire."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def unframe(line: bytes) -> Any:
    """The message of one line (`frame`'s inverse); raises `ValueError` if malformed."""
    return json.loads(line)


class Channel:
    """One end of the socketpair."""

    def __init__(self, sock: socket.socket, timeout: float | None = None) -> None:
        self.sock = sock
        sock.settimeout(timeout)
        self._reader = sock.makefile("rb")

    def send(self, message: Any) -> None:
        """Send one message (raises `ChannelClosedError` if the other end is gone)."""
        try:
            self.sock.sendall(frame(message))
        except OSError as exc:
            raise ChannelClosedError(f"the other process is gone ({exc.strerror or exc})") from None

    def recv(self) -> Any:
        """The next message (raises `ChannelClosedError` at end of stream, timeout or garbage)."""
        try:
            line = self._reader.readline(MAX_LINE)
        except TimeoutError:
            raise ChannelClosedError("no answer within the timeout") from None
        except OSError as exc:
            raise ChannelClosedError(f"the other process is gone ({exc.strerror or exc})") from None
        if not line.endswith(b"\n"):
            raise ChannelClosedError("the other process closed the channel")
        try:
            return unframe(line)
        except ValueError:
            raise ChannelClosedError("the other process sent a line that is not JSON") from None

    def ask(self, message: Any) -> Any:
        """Send a request and return its answer."""
        self.send(message)
        return self.recv()

    def close(self) -> None:
        """Close this end (the other end reads end of stream)."""
        self._reader.close()
        self.sock.close()
