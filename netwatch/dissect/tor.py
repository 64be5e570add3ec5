"""Tor's TLS client hello as seen on the wire (fact TOR-2; nDPI `src/lib/protocols/tls.c`;
Tor's own `src/lib/tls/tortls_openssl.c`).

Tor clients put a random host name in the SNI: `www.` + random base32 (`a-z`, `2-7`) +
`.com` or `.net`. Ordinary names also look like that (`www.4shared.com`), so the random part
must also *look* random: it holds a digit, only base32 characters, and is either long (19 or
more, which nDPI's DGA check also treats as generated) or has a run of 6 consonants no
pronounceable name has. This is a heuristic, hence medium confidence; relay-list matching of
the remote address is the strong signal and is done by enrichment.

Tor's client hello has a second trait that names it exactly: its TLS context sets the
group list "P-256:X25519:P-224" (or "P-256:P-224"; with OpenSSL 3.5 two post-quantum groups
go before them), so its supported_groups end with P-256, X25519, P-224 (0x0017, 0x001d,
0x0015) or P-256, P-224. No browser offers P-224 and OpenSSL's default list leaves it out.
The client also offers no ALPN. With the SNI's shape (`crypto_random_hostname(4, 25,
"www.", ".com")` in the same file: any length from 4, so a short random name that fails the
randomness test above is still Tor's) this is high confidence. One trait alone is not
looked at: a client that copies all three is made to look like Tor.
"""

from __future__ import annotations

import re
from typing import Final

_TOR_SNI = re.compile(r"www\.([a-z2-7]{4,25})\.(?:com|net)")
_CONSONANT_RUN = re.compile(r"[bcdfghjklmnpqrstvwxz]{6,}")
_LONG = 19
_TOR_CLIENT_SNI = re.compile(r"www\.[a-z2-7]{4,25}\.com")
TOR_GROUP_TAILS: Final = ((0x0017, 0x001D, 0x0015), (0x0017, 0x0015))
"""The ends of Tor's group lists: P-256, X25519, P-224 and P-256, P-224 (IANA TLS Supported
Groups codes)."""


def tor_like_sni(sni: str) -> bool:
    """True when an SNI has the shape and randomness of a Tor client's made-up name."""
    match = _TOR_SNI.fullmatch(sni)
    if match is None:
        return False
    word = match.group(1)
    if not any(c in "234567" for c in word):
        return False
    return len(word) >= _LONG or _CONSONANT_RUN.search(word) is not None


def tor_client_hello(sni: str | None, alpn: tuple[str, ...], groups: tuple[int, ...]) -> bool:
    """True for a ClientHello as Tor's link TLS makes it: a `www.<base32>.com` server name
    of any random length, no ALPN, and supported groups ending as Tor's lists do."""
    return (
        sni is not None
        and not alpn
        and any(groups[-len(tail) :] == tail for tail in TOR_GROUP_TAILS)
        and _TOR_CLIENT_SNI.fullmatch(sni) is not None
    )
