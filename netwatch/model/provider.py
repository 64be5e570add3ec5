"""Who runs the far end of a VPN: operator, country, groups, logging, audits and incidents.

A VPN moves trust from the ISP to the VPN's operator, so what a user needs to judge a VPN
flow is who that operator is, under which country's law, whether its no-log claim was ever
checked by someone independent, and whether logs or keys were ever handed over or seized.
`enrich/providers.toml` holds these facts, each with the public page it rests on and the day
it was checked; `enrich/providers.py` loads them into these types.
"""

from __future__ import annotations

from dataclasses import dataclass

NO_OPERATOR_KINDS = frozenset({"self-hosted", "network", "enterprise"})
"""Kinds with no single operator to name a country for: your own (or an unrecognised) server,
a volunteer network (Tor), an organisation's gateway product (AnyConnect, FortiGate)."""


@dataclass(frozen=True, slots=True)
class Fact:
    """One sourced statement about a provider: the words, the page, the day it was checked."""

    text: str
    url: str
    checked: str
    """`YYYY-MM-DD`."""


@dataclass(frozen=True, slots=True)
class Audit:
    """An independent audit the provider published: who, when, of what, and where."""

    auditor: str
    year: int
    scope: str
    url: str
    checked: str


@dataclass(frozen=True, slots=True)
class Incident:
    """A public case where logs or keys were handed over, seized, or found not to exist."""

    year: int
    what: str
    url: str
    checked: str


@dataclass(frozen=True, slots=True)
class ProviderFacts:
    """What is publicly documented about one VPN or anonymizer operator."""

    id: str
    name: str
    kind: str
    """`commercial`, `academic`, `mesh`, `relay`, or one of `NO_OPERATOR_KINDS`."""
    operator: str
    """The legal operator in a few words (`University of Tsukuba`); for the kinds without
    one, who is in its place (`you, or whoever runs the server`)."""
    country: str | None
    """ISO 3166-1 alpha-2 code of the operator's legal seat; None for `NO_OPERATOR_KINDS`."""
    groups: tuple[str, ...]
    """Commonly cited 5/9/14 Eyes groups of `country` (from `enrich/jurisdiction.toml`)."""
    logging: str | None
    """What it keeps, in a few words (`logs kept ≥3 months`), as its own pages say."""
    source: str
    """The page for name, operator, country and `logging`."""
    checked: str
    facts: tuple[Fact, ...] = ()
    audits: tuple[Audit, ...] = ()
    incidents: tuple[Incident, ...] = ()
    country_note: str | None = None
    """Why `country` is None for a kind that has an operator (not established, disputed)."""

    @property
    def has_operator(self) -> bool:
        """False for the kinds where no operator can be named (self-hosted, Tor, gateways)."""
        return self.kind not in NO_OPERATOR_KINDS

    @property
    def audit_text(self) -> str:
        """`no audit`, `1 audit (Deloitte 2022)`, `4 audits, latest Deloitte 2024`."""
        if not self.audits:
            return "no audit"
        latest = max(self.audits, key=lambda a: a.year)
        if len(self.audits) == 1:
            return f"1 audit ({latest.auditor} {latest.year})"
        return f"{len(self.audits)} audits, latest {latest.auditor} {latest.year}"

    @property
    def summary(self) -> str:
        """One phrase for alert messages and tables:
        `VPN Gate (University of Tsukuba, JP, no audit; logs kept ≥3 months)`."""
        if not self.has_operator:
            return f"{self.name} (operator: {self.operator})"
        head = [self.operator, self.country or "country not established", self.audit_text]
        tail = [self.logging] if self.logging else []
        if self.incidents:
            n = len(self.incidents)
            tail.append(f"{n} public incident{'s' if n != 1 else ''}")
        inner = ", ".join(head) + ("; " + "; ".join(tail) if tail else "")
        return f"{self.name} ({inner})"
