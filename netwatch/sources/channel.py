"""The socketpair between the daemon's collector and analyzer: one JSON object per line.

Both ends block; the analyzer's reads time out (`Channel(timeout=...)`) so a stuck
collector can never hang the daemon. The framing is the codec's (`codec.frame`, the one the
daemon's clients and recordings use); `frame` / `unframe` here only adapt its errors.
"""

from __future__ import annotations

import socket
from typing import Any

from netwatch import codec
from netwatch.errors import NetwatchError

MAX_LINE = 256 * 1024 * 1024
"""A line longer than this is not from our collector (a first table of 100,000 sockets is
~25 MB)."""


class ChannelClosedError(NetwatchError):
    """The other process closed its end, died, stopped answering or sent garbage."""


def frame(message: codec.JSONDict) -> bytes:
    """One message as bytes on the wire (`codec.frame`)."""
    return codec.frame(message)


def unframe(line: bytes) -> Any:
    """The message of one line (`frame`'s inverse); raises `ValueError` if malformed."""
    try:
        return codec.parse(line)
    except codec.CodecError as exc:
        raise ValueError(str(exc)) from None


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
