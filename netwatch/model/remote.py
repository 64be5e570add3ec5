"""What netwatch knows about a remote address: scope, country, ASN, owner, jurisdiction, lists,
and the VPN provider that runs it."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from netwatch.model.construct import slotted_init
from netwatch.model.flow import Flow, IPAddress
from netwatch.model.provider import ProviderFacts


class Scope(StrEnum):
    """Where an address lives; only GLOBAL addresses are looked up."""

    GLOBAL = "global"
    PRIVATE = "private"
    LOOPBACK = "loopback"
    LINK_LOCAL = "link_local"
    CGNAT = "cgnat"
    MULTICAST = "multicast"
    DOCUMENTATION = "documentation"
    UNSPECIFIED = "unspecified"
    RESERVED = "reserved"


@dataclass(frozen=True, slots=True)
class DataSource:
    """A data file an answer came from, with its type and build date (epoch seconds)."""

    file: str
    type: str
    built: float | None = None


@dataclass(frozen=True, slots=True)
class Owner:
    """The network's registered owner from RDAP; `status` says whether it is known yet."""

    status: str
    """`ok`, `pending` (lookup running) or `unknown` (see `reason`)."""
    reason: str | None = None
    name: str | None = None
    handle: str | None = None
    cidr: str | None = None
    country: str | None = None
    abuse_emails: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ListHit:
    """Membership of the address in a list (`vpngate`, `tor`, ...), with what matched."""

    list: str
    detail: str | None = None
    first_seen: float | None = None
    last_seen: float | None = None


@dataclass(frozen=True, slots=True)
class RemoteInfo:
    """Everything known about one remote address; non-global scopes carry no country."""

    ip: IPAddress
    scope: Scope
    country: str | None = None
    asn: int | None = None
    as_org: str | None = None
    jurisdiction: tuple[str, ...] = ()
    """Commonly cited intelligence-sharing groups of `country`: `5 Eyes`, `9 Eyes`, `14 Eyes`."""
    owner: Owner | None = None
    lists: tuple[ListHit, ...] = ()
    sources: tuple[DataSource, ...] = ()
    provider: ProviderFacts | None = None
    """Who runs the far end, when netwatch recognises the operator: by the address's lists
    (VPN Gate, Tor, a provider's ranges), the flow's server names, or its VPN label
    (`enrich/providers.py`). None for addresses and flows with no VPN operator in view."""


@slotted_init
@dataclass(frozen=True, slots=True)
class EnrichedFlow:
    """A flow and what is known about its remote side (None for listening sockets)."""

    flow: Flow
    remote: RemoteInfo | None = None
    rev_remote: int = field(default=0, compare=False)
    """Moves whenever `remote` changes for the same flow serial (a late RDAP owner, a list
    update); with the flow's own revisions it says whether anything changed (`version`)."""
    version: tuple[int, int, int, int] = field(init=False, repr=False, compare=False)
    """(serial, rev_facts, rev_traffic, rev_remote): equal versions mean the same values.

    Stored when the flow is made (both parts are frozen), not computed when read: every
    per-flow cache reads all the tick's versions (`model.versions`) several times a tick, and
    a property ran Python for each flow each time (5 to 7 ms per walk of 20,000 flows, about
    a core's 1 % at 1 Hz for the daemon's three walks); a stored field is read in C."""

    def __post_init__(self) -> None:
        f = self.flow
        object.__setattr__(self, "version", (f.serial, f.rev_facts, f.rev_traffic, self.rev_remote))
