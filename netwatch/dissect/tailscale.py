"""Tailscale's DISCO packets: the clear wrapper around its path-discovery messages.

Tailscale peers send DISCO pings and pongs on the same UDP socket (usually port 41641) that
then carries their WireGuard packets. Every DISCO packet starts with the 6-byte magic
`TS💬` (`54 53 f0 9f 92 ac`), then the sender's 32-byte disco public key, a 24-byte NaCl box
nonce, and the sealed message (Poly1305 tag plus at least a type and a version byte). The
magic alone is 48 fixed bits, so one packet is proof. Source: `disco.Magic`, `keyLen`,
`NonceLen` and `LooksLikeDiscoWrapper` in
https://github.com/tailscale/tailscale/blob/main/disco/disco.go
"""

from __future__ import annotations

from netwatch.dissect import labels
from netwatch.model import Evidence, Label

MAGIC = "TS💬".encode()
KEY_LEN = 32
NONCE_LEN = 24
_BOX_MIN = 16 + 2
"""Poly1305 tag plus a message's type and version bytes."""
HEADER_LEN = len(MAGIC) + KEY_LEN + NONCE_LEN
MIN_LEN = HEADER_LEN + _BOX_MIN


def disco_sender(payload: bytes) -> bytes | None:
    """Return the sender's disco public key when `payload` is a DISCO packet, else None."""
    if len(payload) < MIN_LEN or not payload.startswith(MAGIC):
        return None
    return payload[len(MAGIC) : len(MAGIC) + KEY_LEN]


def disco_evidence(sender: bytes) -> tuple[tuple[str, str], ...]:
    """What a DISCO packet shows: the magic, and a prefix of the sender's disco key."""
    return (("disco_magic", "TS💬"), ("disco_key", sender[:8].hex()))


def label(disco: tuple[tuple[str, str], ...]) -> Label:
    """The Tailscale label a DISCO packet earns (high: the magic is proof)."""
    return labels.vpn("tailscale", labels.HIGH, *disco)


def join(best: Label | None, new: Label) -> Label:
    """Merge a flow's Tailscale and WireGuard labels into one `tailscale` label.

    The evidence only grows (what was shown, then what is new), so each merge replaces the
    last under `labels.improves`; `tunnel: wireguard` says WireGuard itself was seen.
    """
    parts = [best, new] if best is not None else [new]
    evidence: list[Evidence] = []
    for part in parts:
        if part.name == "wireguard":
            evidence.append(Evidence("tunnel", "wireguard"))
        if part.name in ("wireguard", "tailscale"):
            evidence.extend(part.evidence)
    unique = dict.fromkeys(evidence)
    return labels.vpn("tailscale", labels.HIGH, *((e.name, e.value) for e in unique))
