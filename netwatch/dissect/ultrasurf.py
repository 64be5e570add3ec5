"""UltraSurf: a censorship-circumvention proxy whose TCP streams open with a fixed 8 bytes.

UltraSurf's client starts each TCP connection to its proxies with the bytes
`cc 1c 30 41 5b a4 38 66` (fact `US-1`). Sixty-four fixed bits at the start of a stream
are proof enough to label the flow; the rest is encrypted and not read. Public source: nDPI's
UltraSurf dissector, `src/lib/protocols/ultrasurf.c` in https://github.com/ntop/nDPI (the
check on the first 8 payload bytes). UltraSurf hides where its users go, like Tor, so it is
an anonymizer (`anon.circumvention`), not a VPN protocol.
"""

from __future__ import annotations

from netwatch.dissect import labels
from netwatch.model import Label

MAGIC = bytes.fromhex("cc1c30415ba43866")


def label(payload: bytes) -> Label | None:
    """The UltraSurf label when `payload` (a TCP stream's first bytes) opens with its magic."""
    if not payload.startswith(MAGIC):
        return None
    return labels.anonymizer("ultrasurf", labels.HIGH, ("magic", MAGIC.hex()))
