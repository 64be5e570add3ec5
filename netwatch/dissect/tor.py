"""Tor's TLS client hello as seen on the wire (fact TOR-2; nDPI `src/lib/protocols/tls.c`).

Tor clients put a random host name in the SNI: `www.` + random base32 (`a-z`, `2-7`) +
`.com` or `.net`. Ordinary names also look like that (`www.4shared.com`), so the random part
must also *look* random: it holds a digit, only base32 characters, and is either long (19 or
more, which nDPI's DGA check also treats as generated) or has a run of 6 consonants no
pronounceable name has. This is a heuristic, hence medium confidence; relay-list matching of
the remote address is the strong signal and is done by enrichment.
"""

from __future__ import annotations

import re

_TOR_SNI = re.compile(r"www\.([a-z2-7]{4,25})\.(?:com|net)")
_CONSONANT_RUN = re.compile(r"[bcdfghjklmnpqrstvwxz]{6,}")
_LONG = 19


def tor_like_sni(sni: str) -> bool:
    """True when an SNI has the shape and randomness of a Tor client's made-up name."""
    match = _TOR_SNI.fullmatch(sni)
    if match is None:
        return False
    word = match.group(1)
    if not any(c in "234567" for c in word):
        return False
    return len(word) >= _LONG or _CONSONANT_RUN.search(word) is not None
