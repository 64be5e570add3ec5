"""Cisco AnyConnect (and OpenConnect/ocserv): the CSTP tunnel request and its DTLS channel.

The client opens its tunnel with `CONNECT /CSCOSSLC/tunnel HTTP/1.1` and `X-CSTP-*` headers
(`X-CSTP-Version`, `X-CSTP-MTU`, ...), offering a DTLS channel with `X-DTLS-*` headers
(`X-DTLS-Master-Secret`, `X-DTLS-CipherSuite`); the data channel is then DTLS over UDP, by
default on port 443. Usually all of this is inside TLS; it is only seen in clear when TLS is
terminated before the server or not used. Source: the OpenConnect VPN protocol draft,
https://datatracker.ietf.org/doc/draft-mavrogiannopoulos-openconnect/ (sections on the CSTP
channel and on DTLS). DTLS record layout: RFC 6347 §4.1; AnyConnect's legacy DTLS uses the
pre-standard version 0x0100 (OpenSSL's `DTLS1_BAD_VER`).

A DTLS record on UDP 443 says nothing alone (WebRTC uses DTLS too), so the dissector labels
it only between two hosts that were seen opening a CSTP tunnel that offered DTLS.
"""

from __future__ import annotations

from netwatch.dissect import labels
from netwatch.model import Label

TUNNEL_PATH = "/cscosslc/tunnel"
DTLS_PORT = 443
_DTLS_TYPES = {0x16: "handshake", 0x17: "application_data"}
_DTLS_VERSIONS = {0xFEFF: "1.0", 0xFEFD: "1.2", 0x0100: "pre-standard 0x0100"}
_DTLS_HEADER = 13
"""content type, version, epoch (2), sequence number (6), length (2)."""


def cstp_label(method: str, path: str, line: str, headers: tuple[str, ...]) -> Label | None:
    """Label a clear HTTP request as an AnyConnect CSTP tunnel request, or None.

    The CONNECT to `/CSCOSSLC/tunnel` with `X-CSTP-`/`X-DTLS-` headers is high; either alone
    (the path without the headers, or the headers on another request) is medium.
    """
    tunnel = method == "CONNECT" and path.lower().startswith(TUNNEL_PATH)
    if not tunnel and not headers:
        return None
    evidence = [("http_request", line[:128])]
    if headers:
        evidence.append(("cstp_headers", ",".join(headers)))
    confidence = labels.HIGH if tunnel and headers else labels.MEDIUM
    return labels.vpn("anyconnect", confidence, *evidence)


def offers_dtls(headers: tuple[str, ...]) -> bool:
    """True when the CSTP request offered a DTLS channel (an `X-DTLS-*` header)."""
    return any(h.startswith("x-dtls-") for h in headers)


def dtls_record(payload: bytes) -> str | None:
    """Describe the DTLS record at the start of a datagram (`handshake v1.2`), or None."""
    if len(payload) < _DTLS_HEADER + 1:
        return None
    kind = _DTLS_TYPES.get(payload[0])
    version = _DTLS_VERSIONS.get((payload[1] << 8) | payload[2])
    length = (payload[11] << 8) | payload[12]
    if kind is None or version is None or not 0 < length <= len(payload) - _DTLS_HEADER:
        return None
    if payload[0] == 0x16 and payload[3:5] != b"\x00\x00":
        return None  # an unencrypted handshake record is in epoch 0
    return f"{kind} v{version}"


def dtls_label(record: str) -> Label:
    """The label for a DTLS datagram between hosts that opened a CSTP tunnel offering DTLS."""
    return labels.vpn(
        "anyconnect",
        labels.MEDIUM,
        ("dtls_record", record),
        ("cstp_session", "same hosts offered DTLS in a CSTP request"),
    )
