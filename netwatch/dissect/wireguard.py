"""WireGuard message types and sizes, with index matching (fact WG-1; nDPI `wireguard.c`).

Byte 0 is the type, bytes 1-3 are zero. Initiation is 148 bytes (sender index at 4),
response 92 bytes (sender index at 4, receiver index at 8), cookie reply 64, transport at
least 32 bytes in 16-byte steps (receiver index at 4, little-endian counter at 8). The
handshake pair with matching indices is proof; transport packets alone (a capture started
mid-session) need a steady receiver index and a rising counter in both directions.
TunnelBear's variant uses 204/100-byte handshakes.
"""

from __future__ import annotations

from netwatch.dissect import labels
from netwatch.model import Label

INIT_SIZES = frozenset({148, 204})
RESP_SIZES = frozenset({92, 100})
COOKIE_SIZE = 64
_MAX_COUNTER_GAP = 1 << 20


def message_type(payload: bytes) -> int:
    """Return the message type (1-4) when size and reserved bytes fit it, else 0."""
    n = len(payload)
    if n < 32 or payload[1:4] != b"\x00\x00\x00":
        return 0
    kind = payload[0]
    if (
        (kind == 1 and n in INIT_SIZES)
        or (kind == 2 and n in RESP_SIZES)
        or (kind == 3 and n == COOKIE_SIZE)
        or (kind == 4 and (n - 32) % 16 == 0)
    ):
        return kind
    return 0


class WireGuardTracker:
    """Per-flow WireGuard evidence: handshake indices and transport counters per direction."""

    __slots__ = ("_counter", "_data_idx", "_data_seen", "_init_sender", "_resp_sender", "dead")

    def __init__(self) -> None:
        self._init_sender: bytes | None = None
        self._resp_sender: bytes | None = None
        self._data_idx: list[bytes | None] = [None, None]
        self._counter = [-1, -1]
        self._data_seen = [0, 0]
        self.dead = False

    def feed(self, from_initiator: bool, payload: bytes) -> Label | None:
        """Take one payload; return a label when a message confirms WireGuard."""
        kind = message_type(payload)
        if kind == 0:
            self.dead = True
            return None
        if kind == 1:
            self._init_sender = payload[4:8]
            return labels.vpn(
                "wireguard", labels.MEDIUM, ("message", f"handshake_initiation/{len(payload)}")
            )
        if kind == 2:
            return self._response(payload)
        if kind == 3:
            if self._init_sender is not None and payload[4:8] == self._init_sender:
                return labels.vpn("wireguard", labels.HIGH, ("message", "cookie_reply"))
            return None
        return self._transport(0 if from_initiator else 1, payload)

    def _response(self, payload: bytes) -> Label:
        self._resp_sender = payload[4:8]
        ev = ("message", f"handshake_response/{len(payload)}")
        if self._init_sender is not None and payload[8:12] == self._init_sender:
            return labels.vpn(
                "wireguard", labels.HIGH, ev, ("receiver_index", payload[8:12][::-1].hex())
            )
        return labels.vpn("wireguard", labels.MEDIUM, ev)

    def _transport(self, side: int, payload: bytes) -> Label | None:
        idx = payload[4:8]
        counter = int.from_bytes(payload[8:16], "little")
        if self._data_idx[side] is None:
            self._data_idx[side] = idx
        elif idx != self._data_idx[side] or not (
            self._counter[side] < counter < self._counter[side] + _MAX_COUNTER_GAP
        ):
            self.dead = self._init_sender is None and self._resp_sender is None
            return None
        self._counter[side] = counter
        self._data_seen[side] += 1
        known = self._resp_sender if side == 0 else self._init_sender
        if known is not None and idx == known:
            return labels.vpn(
                "wireguard", labels.HIGH, ("message", "transport_data"), ("index", "matches")
            )
        if self._data_seen[0] >= 2 and self._data_seen[1] >= 2:
            return labels.vpn(
                "wireguard",
                labels.MEDIUM,
                ("message", "transport_data"),
                ("receiver_index", "steady both ways, counters rising"),
            )
        return None
