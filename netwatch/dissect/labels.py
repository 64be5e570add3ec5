"""Label constructors shared by the dissectors, so names, categories and the vpn flag agree.

A VPN protocol label has category `vpn` and `vpn=True`; Tor has category `anonymizer` and
`vpn=True`; everything else (tls, dns, quic, ...) is `vpn=False`. `NAMES` lists every name a
label can have, for checking what users write (`protocols = [...]` in the policy). Pure;
imports only the model and the VPN host-name table.
"""

from __future__ import annotations

from netwatch.dissect import names
from netwatch.model import Confidence, Evidence, Label

HIGH = Confidence.HIGH
MEDIUM = Confidence.MEDIUM
LOW = Confidence.LOW
GUESS = Confidence.GUESS
"""For labels resting on a port number alone: the weakest evidence there is."""


def vpn(name: str, confidence: Confidence, *evidence: tuple[str, str]) -> Label:
    """Return a VPN protocol label (`category="vpn"`, `vpn=True`)."""
    return Label(name, "vpn", True, confidence, tuple(Evidence(k, v) for k, v in evidence))


def anonymizer(name: str, confidence: Confidence, *evidence: tuple[str, str]) -> Label:
    """Return an anonymizer label (Tor): `category="anonymizer"`, `vpn=True`."""
    return Label(name, "anonymizer", True, confidence, tuple(Evidence(k, v) for k, v in evidence))


def plain(name: str, category: str, confidence: Confidence, *evidence: tuple[str, str]) -> Label:
    """Return a non-VPN protocol label (`web`, `network`, ...)."""
    return Label(name, category, False, confidence, tuple(Evidence(k, v) for k, v in evidence))


PROTOCOLS = frozenset(
    {
        "anyconnect", "dns", "gre", "http", "ipsec", "l2tp", "llmnr", "mdns", "openvpn", "pptp",
        "quic", "softether", "ssh", "sstp", "tailscale", "tinc", "tls", "tor", "ultrasurf",
        "vpngate", "wireguard",
    }
)  # fmt: skip
"""Label names the dissectors give by protocol (a test checks every constructor call)."""

NAMES = (
    PROTOCOLS
    | frozenset(names.VPN_HOST_SUFFIXES.values())
    | frozenset(names.VPN_HOST_LABEL_PREFIXES.values())
    | frozenset(names.CERT_SUBJECT_UNITS.values())
    | frozenset(names.CERT_ORGANISATIONS.values())
)
"""Every label name: the protocols and the VPN services named by host or certificate."""


def rank(label: Label | None) -> int:
    """Order labels: any VPN label beats any plain one, then higher confidence wins."""
    if label is None:
        return -1
    return (len(Confidence) if label.vpn else 0) + label.confidence.rank


def improves(new: Label, old: Label | None) -> bool:
    """True when `new` should replace `old`: it ranks higher, or ranks the same and adds to it.

    "Adds to it" means `new` carries all of `old`'s evidence and more, as when Tailscale's
    DISCO joins a flow already proven WireGuard: the label is refined, never weakened.
    """
    if old is None or rank(new) > rank(old):
        return True
    return rank(new) == rank(old) and set(old.evidence) < set(new.evidence)
