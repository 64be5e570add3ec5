"""TLS ClientHello: server name (SNI), ALPN and supported groups (RFC 8446 §4.1.2 and
§4.2.7, RFC 6066 §3, RFC 7301).

`parse_client_hello_records` takes the first bytes a client sent on a TCP stream (possibly
several segments joined) and unwraps handshake records until the ClientHello is whole; it says
`NEED_MORE` while the hello is cut, so the caller can wait for the next segment.
`parse_client_hello` reads a bare handshake message, which is what QUIC carries in its CRYPTO
frames. Everything is bounds-checked slicing: truncated or hostile input gives None.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

MAX_HELLO: Final = 16384
"""Largest ClientHello we reassemble (a record's maximum plaintext size)."""


@dataclass(frozen=True, slots=True)
class ClientHello:
    """The parts of a ClientHello that name the destination and the application protocol."""

    sni: str | None
    alpn: tuple[str, ...]
    version: int
    """The legacy_version field (0x0303 for TLS 1.2 and 1.3)."""
    groups: tuple[int, ...] = ()
    """The supported_groups extension's named groups, in the client's order (RFC 8446
    §4.2.7): which ones a client offers is part of its fingerprint (`dissect.tor`)."""


class _NeedMore:
    """Marker: the bytes so far are a valid but incomplete ClientHello."""

    def __repr__(self) -> str:
        return "NEED_MORE"


NEED_MORE: Final = _NeedMore()


def looks_like_handshake(data: bytes) -> bool:
    """Cheap test for a TLS handshake record header (content type 22, version 3.x)."""
    return len(data) >= 3 and data[0] == 0x16 and data[1] == 0x03 and data[2] <= 0x04


def parse_client_hello_records(data: bytes) -> ClientHello | _NeedMore | None:
    """Unwrap TLS records from the start of a client stream and parse the ClientHello."""
    handshake = bytearray()
    offset = 0
    n = len(data)
    while offset + 5 <= n:
        if data[offset] != 0x16 or data[offset + 1] != 0x03:
            break
        rec_len = (data[offset + 3] << 8) | data[offset + 4]
        if rec_len == 0 or rec_len > MAX_HELLO + 2048:
            return None
        handshake += data[offset + 5 : offset + 5 + rec_len]
        offset += 5 + rec_len
        if len(handshake) >= 4:
            want = 4 + ((handshake[1] << 16) | (handshake[2] << 8) | handshake[3])
            if len(handshake) >= want:
                break
    if len(handshake) < 4:
        return NEED_MORE if n < 5 or offset >= n or offset + 5 > n else None
    if handshake[0] != 1:
        return None
    want = 4 + ((handshake[1] << 16) | (handshake[2] << 8) | handshake[3])
    if want > MAX_HELLO:
        return None
    if len(handshake) < want:
        return NEED_MORE
    return parse_client_hello(bytes(handshake[:want]))


def parse_handshake_stream(data: bytes) -> ClientHello | _NeedMore | None:
    """Parse a ClientHello from bare handshake bytes (QUIC CRYPTO data, no record layer)."""
    if len(data) < 4:
        return NEED_MORE
    if data[0] != 1:
        return None
    want = 4 + ((data[1] << 16) | (data[2] << 8) | data[3])
    if want > MAX_HELLO:
        return None
    if len(data) < want:
        return NEED_MORE
    return parse_client_hello(data[:want])


def parse_client_hello(msg: bytes) -> ClientHello | None:
    """Parse a complete handshake message of type client_hello (type byte included)."""
    if len(msg) < 42 or msg[0] != 1:
        return None
    end = min(len(msg), 4 + ((msg[1] << 16) | (msg[2] << 8) | msg[3]))
    version = (msg[4] << 8) | msg[5]
    off = 4 + 2 + 32
    off += 1 + msg[off]  # session id
    if off + 2 > end:
        return None
    off += 2 + ((msg[off] << 8) | msg[off + 1])  # cipher suites
    if off + 1 > end:
        return None
    off += 1 + msg[off]  # compression methods
    if off + 2 > end:
        return ClientHello(None, (), version) if off == end else None
    ext_end = min(end, off + 2 + ((msg[off] << 8) | msg[off + 1]))
    off += 2
    sni: str | None = None
    alpn: tuple[str, ...] = ()
    groups: tuple[int, ...] = ()
    while off + 4 <= ext_end:
        ext_type = (msg[off] << 8) | msg[off + 1]
        ext_len = (msg[off + 2] << 8) | msg[off + 3]
        body = msg[off + 4 : min(off + 4 + ext_len, ext_end)]
        off += 4 + ext_len
        if ext_type == 0:
            sni = _server_name(body)
        elif ext_type == 16:
            alpn = _alpn(body)
        elif ext_type == 10:
            groups = _groups(body)
    return ClientHello(sni, alpn, version, groups)


def _groups(body: bytes) -> tuple[int, ...]:
    """The named groups of a supported_groups extension (a 2-byte length, then 2 bytes
    each); a list cut short gives the groups it holds whole."""
    if len(body) < 2:
        return ()
    end = min(len(body), 2 + ((body[0] << 8) | body[1]))
    return tuple((body[i] << 8) | body[i + 1] for i in range(2, end - 1, 2))


def _server_name(body: bytes) -> str | None:
    """Return the first host_name entry of a server_name extension."""
    off = 2
    while off + 3 <= len(body):
        kind = body[off]
        length = (body[off + 1] << 8) | body[off + 2]
        name = body[off + 3 : off + 3 + length]
        if len(name) != length:
            return None
        if kind == 0:
            text = name.decode("ascii", "replace").strip().rstrip(".").lower()
            return text or None
        off += 3 + length
    return None


def _alpn(body: bytes) -> tuple[str, ...]:
    """Return the protocol names of an ALPN extension."""
    out: list[str] = []
    off = 2
    while off < len(body) and len(out) < 16:
        length = body[off]
        name = body[off + 1 : off + 1 + length]
        if len(name) != length or not length:
            break
        out.append(name.decode("ascii", "replace"))
        off += 1 + length
    return tuple(out)


_RECORD_TYPES: Final = frozenset((20, 21, 22, 23))
_MAX_RECORD: Final = 16384 + 2048
"""Largest TLS record (RFC 8446 §5.2: 2^14 plus expansion)."""


@dataclass(slots=True)
class RecordWalker:
    """Follows the TLS record headers through one direction's TCP segments, in order.

    Encrypted records still show their type and length in clear (RFC 8446 §5.2); a client
    whose protocol sends a body of a known size shows that size here. `feed` returns the
    (content type, length) of each record whose header starts in the segment, or None once
    the bytes stop looking like TLS records (a lost segment, or not TLS at all).
    """

    skip: int = 0
    """Bytes of the current record still to come before the next header."""
    partial: bytes = b""
    """The first bytes of a header split across segments."""

    def feed(self, segment: bytes) -> list[tuple[int, int]] | None:
        """The records that start in this next segment of the direction (see the class)."""
        data = self.partial + segment  # with a partial header, `skip` is 0
        pos = self.skip
        self.partial = b""
        out: list[tuple[int, int]] = []
        n = len(data)
        while pos + 5 <= n:
            ctype, length = data[pos], (data[pos + 3] << 8) | data[pos + 4]
            if ctype not in _RECORD_TYPES or data[pos + 1] != 0x03 or length > _MAX_RECORD:
                return None
            out.append((ctype, length))
            pos += 5 + length
        if pos < n:
            self.partial, self.skip = data[pos:], 0
        else:
            self.skip = pos - n
        return out
