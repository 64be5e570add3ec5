"""Bounded per-flow memory for the dissectors: what each flow has shown so far.

`FlowStates` is an LRU keyed by FlowKey, so state for both directions of a conversation lives
in one place (OpenVPN's echo of the client's session id, WireGuard's index matching, QUIC's
ClientHello spread over several datagrams). Its size is capped; the pipeline also calls
`Dissector.forget` when a flow expires.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from netwatch.dissect.openvpn import OpenVpnTracker
from netwatch.dissect.quic import CryptoStream, InitialKeys
from netwatch.dissect.tls import RecordWalker
from netwatch.dissect.wireguard import WireGuardTracker
from netwatch.model import FlowKey, Label

MAX_BUFFER = 8192
"""Most bytes kept per direction while a ClientHello or HTTP header block is incomplete."""


@dataclass(slots=True)
class FlowState:
    """What the dissectors remember about one flow."""

    best: Label | None = None
    """The best label already reported, so a later packet never reports a weaker one."""
    done: bool = False
    client_buf: bytes = b""
    server_buf: bytes = b""
    client_wait: bool = False
    """The initiator's first bytes are an incomplete ClientHello/request: keep joining."""
    server_wait: bool = False
    http: bool = False
    """A clear HTTP request was seen: read the response's first bytes."""
    sides: int = 0
    """Bit 1: the initiator's first payload was seen; bit 2: the responder's."""
    cert_wait: bool = False
    """A TLS ClientHello went out: read the server's first bytes for its certificate."""
    sni: str | None = None
    """The ClientHello's server name, which decides how much the certificate may say."""
    tunnel: bool = False
    """An HTTP CONNECT was seen: the client's next bytes may be a ClientHello."""
    ovpn: OpenVpnTracker | None = None
    wg: WireGuardTracker | None = None
    disco: tuple[tuple[str, str], ...] = ()
    """Evidence of the first Tailscale DISCO packet; WireGuard found later joins it."""
    quic_keys: InitialKeys | None = None
    quic_crypto: CryptoStream | None = None
    quic_tries: int = 0
    tinc_sides: set[bool] = field(default_factory=set)
    watermark: RecordWalker | None = None
    """A SoftEther-shaped ClientHello was seen: the client's records are watched for the
    watermark upload (`softether.watermark_sized`)."""
    app_records: int = 0
    """Application-data records the client sent since then."""


class FlowStates:
    """An LRU of FlowState keyed by FlowKey, holding at most `capacity` flows."""

    __slots__ = ("_capacity", "_items")

    def __init__(self, capacity: int) -> None:
        self._capacity = max(1, capacity)
        self._items: OrderedDict[FlowKey, FlowState] = OrderedDict()

    def get(self, key: FlowKey) -> FlowState:
        """Return the flow's state, creating it (and evicting the oldest) when new."""
        items = self._items
        state = items.get(key)
        if state is None:
            state = FlowState()
            items[key] = state
            if len(items) > self._capacity:
                items.popitem(last=False)
        else:
            items.move_to_end(key)
        return state

    def waits_for_certificate(self, key: FlowKey) -> bool:
        """Whether a flow waits for the server's certificate (no state is made for asking)."""
        state = self._items.get(key)
        return state is not None and state.cert_wait

    def forget(self, key: FlowKey) -> None:
        """Drop a flow's state (the flow expired)."""
        self._items.pop(key, None)

    def __len__(self) -> int:
        return len(self._items)


def append_bounded(buf: bytes, more: bytes) -> bytes:
    """Join stream bytes, keeping at most MAX_BUFFER."""
    if len(buf) >= MAX_BUFFER:
        return buf
    return (buf + more)[:MAX_BUFFER]
