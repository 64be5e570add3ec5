"""Clear-text HTTP/1.x: the request line and Host header, and a response's body prefix.

Only the first bytes of each direction are looked at, so a request split over segments is read
from the caller's small reassembly buffer. The body prefix is what the VPN Gate rule needs: the
server list starts `*vpn_servers` (the layout of https://www.vpngate.net/api/iphone/).
"""

from __future__ import annotations

from dataclasses import dataclass

METHODS = (
    b"GET ",
    b"POST ",
    b"HEAD ",
    b"PUT ",
    b"DELETE ",
    b"OPTIONS ",
    b"CONNECT ",
    b"PATCH ",
    b"TRACE ",
    b"SSTP_DUPLEX_POST ",
)
_FIRST = frozenset(m[0] for m in METHODS)
_MAX_LINE = 2048
CSTP_PREFIXES = (b"x-cstp-", b"x-dtls-")
"""Cisco AnyConnect's tunnel request headers (see `anyconnect`)."""
BODY_PREFIX = 64


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """The request line (`GET /path HTTP/1.1`), method, path and Host (lower-case, no port).

    `cstp_headers` names the AnyConnect `X-CSTP-*`/`X-DTLS-*` headers present (lower-case).
    """

    line: str
    method: str
    path: str
    host: str | None
    cstp_headers: tuple[str, ...] = ()


def looks_like_request(data: bytes) -> bool:
    """Cheap test: does the stream start with a known HTTP method?"""
    return bool(data) and data[0] in _FIRST and data.startswith(METHODS)


def parse_request(data: bytes) -> HttpRequest | None:
    """Parse the request line and Host header; None until the request line is complete."""
    eol = data.find(b"\r\n", 0, _MAX_LINE)
    if eol < 0:
        eol = data.find(b"\n", 0, _MAX_LINE)
        if eol < 0:
            return None
    line = data[:eol].decode("latin-1").strip()
    parts = line.split(" ")
    if len(parts) < 2 or not parts[-1].startswith("HTTP/") and len(parts) != 2:
        return None
    host: str | None = None
    head_end = data.find(b"\r\n\r\n", eol, 8192)
    headers = data[eol : head_end if head_end >= 0 else 8192]
    lower = headers.lower()
    idx = lower.find(b"\nhost:")
    if idx >= 0:
        stop = headers.find(b"\n", idx + 6)
        value = headers[idx + 6 : stop if stop >= 0 else len(headers)]
        host = _strip_port(value.decode("latin-1").strip().lower()) or None
    return HttpRequest(line, parts[0], parts[1], host, _cstp_headers(lower))


def _cstp_headers(lower: bytes) -> tuple[str, ...]:
    """Names of the `x-cstp-*`/`x-dtls-*` headers in a lower-cased header block (at most 8)."""
    if b"\nx-cstp-" not in lower and b"\nx-dtls-" not in lower:
        return ()
    names: list[str] = []
    for line in lower.split(b"\n")[1:]:
        name = line.split(b":", 1)[0].strip()
        if name.startswith(CSTP_PREFIXES) and len(names) < 8:
            names.append(name[:64].decode("latin-1"))
    return tuple(names)


def _strip_port(host: str) -> str:
    """Drop a `:port` suffix (keeping bracketed IPv6 literals intact)."""
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def looks_like_response(data: bytes) -> bool:
    """Cheap test for an HTTP/1.x status line."""
    return data.startswith(b"HTTP/1.")


def response_body_prefix(data: bytes) -> bytes | None:
    """Return the first bytes of the body once the header block has arrived, else None."""
    end = data.find(b"\r\n\r\n", 0, 16384)
    if end < 0:
        return None
    start = end + 4
    if b"transfer-encoding: chunked" in data[:end].lower():
        eol = data.find(b"\r\n", start, start + 18)
        if eol < 0:
            return None
        start = eol + 2
    body = data[start : start + BODY_PREFIX]
    return body or None
