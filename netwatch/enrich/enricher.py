"""The enrichment stage: a flow's remote address -> `RemoteInfo` (geo, ASN, groups, owner, lists,
provider).

`Enricher` implements the pipeline's Enricher protocol. Geo answers come from `GeoLookup`
(cached per address); the RDAP owner comes from an optional resolver that never blocks (it
answers `pending` until its background lookup is done); list membership comes from
`ListMatcher`s (VPN Gate, Tor, ...); who runs a VPN flow's far end comes from the
provider table (`providers`). `build_enricher` is the composition helper the CLI and the
pipeline use: it discovers the data files and opens them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from netwatch.enrich.geo import GeoDatabase, GeoLookup, Origin
from netwatch.enrich.geo_paths import Candidate, discover
from netwatch.errors import DataFileError
from netwatch.model import (
    Confidence,
    EnrichedFlow,
    Evidence,
    Flow,
    IPAddress,
    Label,
    ListHit,
    Owner,
    RemoteInfo,
    Scope,
    Transport,
    parse_ip,
)

if TYPE_CHECKING:
    from netwatch.enrich.providers import ProviderTable


class ListMatcher(Protocol):
    """Membership in one list of addresses (VPN Gate relays, Tor relays, ...)."""

    def match(self, ip: IPAddress, port: int | None) -> tuple[ListHit, ...]:
        """Return the hits for this address (and port, when the list knows ports)."""
        ...


@runtime_checkable
class AddressLabeller(ListMatcher, Protocol):
    """A list that also says what a flow to a listed address is (VPN provider ranges)."""

    def label(self, ip: IPAddress, port: int | None, transport: Transport) -> Label | None:
        """Return a label for a flow to this address, port and transport, if the list says."""
        ...


class OwnerResolver(Protocol):
    """Looks up a network's registered owner without blocking the caller."""

    def owner(self, ip: IPAddress) -> Owner:
        """Return the known owner, or `pending` while a background lookup runs."""
        ...

    def wait(self, ips: Sequence[IPAddress], timeout: float) -> None:
        """Start lookups for `ips` and block until all are done or `timeout` seconds pass."""
        ...

    def close(self) -> None:
        """Stop background work."""
        ...


class Enricher:
    """Adds what is known about a flow's remote side; cheap enough for every flow of a tick."""

    def __init__(
        self,
        geo: GeoLookup | Sequence[GeoDatabase],
        rdap: OwnerResolver | None = None,
        lists: Sequence[ListMatcher] = (),
        problems: Mapping[str, str] | None = None,
        *,
        fixed_lists: bool = False,
        providers: ProviderTable | None = None,
    ) -> None:
        self.geo = geo if isinstance(geo, GeoLookup) else GeoLookup(geo)
        self._fixed_lists = fixed_lists or not lists
        self.rdap = rdap
        self.lists = tuple(lists)
        self._labellers = tuple(m for m in self.lists if isinstance(m, AddressLabeller))
        self.problems = dict(problems or {})
        """Discovered files that could not be opened (path -> reason), for `geoip status`."""
        self.providers = providers
        """Who runs VPNs and anonymizers (`enrich/providers.toml`); None: no provider facts."""
        self._with_provider: dict[tuple[object, str], tuple[RemoteInfo, RemoteInfo]] = {}

    @property
    def stable(self) -> bool:
        """Whether a flow always gets an equal answer, so last tick's can be reused.

        True when the answers come only from the opened GeoIP files and lists loaded once
        (`fixed_lists`); an RDAP resolver's answers change as its lookups finish and expire.
        """
        return self.rdap is None and self._fixed_lists

    def remote_info(self, ip: IPAddress | str, port: int | None = None) -> RemoteInfo:
        """Return everything known about one address; raises ValueError for a bad string."""
        addr = parse_ip(ip)
        info = self.geo.lookup(addr)
        if self.rdap is None and not self.lists:
            return info
        owner = None
        if self.rdap is not None and info.scope is Scope.GLOBAL:
            owner = self.rdap.owner(addr)
        hits: tuple[ListHit, ...] = ()
        for matcher in self.lists:
            hits += matcher.match(addr, port)
        if owner is None and not hits:
            return info
        provider = self.providers.for_lists(hits) if self.providers is not None else None
        return dataclasses.replace(info, owner=owner, lists=hits, provider=provider)

    def enrich(self, flow: Flow) -> EnrichedFlow:
        """Return the flow with its RemoteInfo (None for listening sockets)."""
        remote = flow.key.remote
        if remote is None:
            return EnrichedFlow(flow)
        info = self.remote_info(remote.ip, remote.port or None)
        if info.lists and self._labellers:
            flow = self._address_label(flow)
        if self.providers is not None:
            info = self._provider_of(flow, info)
        return EnrichedFlow(flow, info)

    def _provider_of(self, flow: Flow, info: RemoteInfo) -> RemoteInfo:
        """`info` with the provider of this flow (`ProviderTable.for_flow`).

        The same address answers with the same `RemoteInfo` object tick after tick (GeoIP
        answers are cached), and the enrich stage compares last tick's answer by identity
        before it compares values (`flows.socket_flows`), so the copy with a provider is kept
        per (remote endpoint, provider) and handed on while the answer is the same object.
        """
        assert self.providers is not None  # noqa: S101  # checked by the caller
        found = self.providers.for_flow(flow, info.lists)
        if found is info.provider:
            return info
        if found is None:
            return dataclasses.replace(info, provider=None)
        remote = flow.key.remote
        key = (None if remote is None else (remote.ip, remote.port), found.id)
        kept = self._with_provider.get(key)
        if kept is not None and kept[0] is info:
            return kept[1]
        if len(self._with_provider) >= _PROVIDER_MEMO:
            self._with_provider.clear()
        out = dataclasses.replace(info, provider=found)
        self._with_provider[key] = (info, out)
        return out

    def _address_label(self, flow: Flow) -> Flow:
        """Label a flow by where it goes when nothing better says what it is.

        Only a provider's address list says so, hence low confidence: a VPN label from a
        signature, certificate or name stays, a guess from a port alone gives way
        (signature > certificate/name > address list > port), and any VPN label beats a
        plain one (as `dissect.labels.improves` ranks them). A plain label (`tls`, `quic`)
        or a port guess that gives way is kept as `protocol` evidence.
        """
        old, remote = flow.label, flow.key.remote
        if remote is None or (old is not None and old.vpn and not _below_a_list(old)):
            return flow
        for labeller in self._labellers:
            new = labeller.label(remote.ip, remote.port or None, flow.key.transport)
            if new is None:
                continue
            if old is not None:
                new = dataclasses.replace(
                    new, evidence=(*new.evidence, Evidence("protocol", old.name))
                )
            return dataclasses.replace(flow, label=new)
        return flow

    def describe(self) -> str:
        """One line for the status bar: the files in use with their data dates."""
        parts = []
        for db in self.geo.databases:
            day = datetime.fromtimestamp(db.build_epoch, UTC).strftime("%Y-%m-%d")
            parts.append(f"{db.path.name} ({db.origin.name.lower()}, {day})")
        return "; ".join(parts) if parts else "no GeoIP data"

    def skipped(self) -> tuple[str, ...]:
        """The damaged data files left out, one line each naming the file and why.

        Those found at start (`problems`) and GeoIP files whose records failed to decode
        later, while answering (`GeoLookup.problems`): the caller keeps running without them
        and shows these lines (status bar, metrics, one stderr line per file in commands).
        """
        found = {**self.problems, **self.geo.problems}
        return tuple(found[path] for path in sorted(found))

    def close(self) -> None:
        """Stop the resolver and close the files."""
        if self.rdap is not None:
            self.rdap.close()
        self.geo.close()


_PROVIDER_MEMO = 4096
"""Remembered (answer, provider) copies; more distinct VPN endpoints than this start afresh."""


def _below_a_list(label: Label) -> bool:
    """A label weaker than an address list (`low`): a guess from a port alone (SE-TLS-1).

    Decided by the confidence order itself (`Confidence.rank`), not by the evidence's names:
    the port guess is `guess` since that level exists, and a check for `low` plus a `_port`
    evidence name no longer matched it.
    """
    return label.confidence.rank < Confidence.LOW.rank


def _origin(candidate: Candidate, db_type: str) -> Origin:
    if candidate.how == "explicit":
        return Origin.EXPLICIT
    if candidate.how == "updated":
        return Origin.UPDATED
    if candidate.how == "bundled":
        return Origin.BUNDLED
    kind = db_type.lower()
    if kind.startswith("geoip2-"):
        return Origin.GEOIP2
    if kind.startswith("geolite2-"):
        return Origin.GEOLITE2
    return Origin.DISCOVERED


def open_databases(
    candidates: Sequence[Candidate],
) -> tuple[list[GeoDatabase], dict[str, str]]:
    """Open every candidate; explicit failures raise, others are returned as problems."""
    databases: list[GeoDatabase] = []
    problems: dict[str, str] = {}
    for candidate in candidates:
        # Provisional (refined by `_origin` below); it picks the reader `open` uses.
        origin = {"explicit": Origin.EXPLICIT, "bundled": Origin.BUNDLED}.get(
            candidate.how, Origin.DISCOVERED
        )
        try:
            db = GeoDatabase.open(candidate.path, origin)
        except DataFileError as exc:
            if candidate.how == "explicit":
                raise
            problems[str(candidate.path)] = str(exc)
            continue
        db.origin = _origin(candidate, db.database_type)
        databases.append(db)
    return databases, problems


def build_enricher(
    geoip_dbs: Sequence[Path] = (),
    rdap: bool = False,
    lists: Sequence[ListMatcher] | None = None,
) -> Enricher:
    """Discover and open the GeoIP files (`geo_paths`) and build the enricher.

    A corrupt, truncated or missing file given explicitly raises DataFileError naming it;
    broken discovered files are skipped and listed in `enricher.problems`. Without `lists`,
    the VPN Gate and Tor histories stored by `netwatch lists update`, the VPN providers'
    ranges it fetched and the bundled WARP ranges are matched, so every command that enriches
    also knows list membership; a broken list file is skipped and
    listed in `problems` like a broken discovered database.
    """
    databases, problems = open_databases(list(discover(geoip_dbs)))
    loaded = lists is None  # the stored histories, read once here and never changed after
    if lists is None:
        from netwatch.enrich.lists import load_matchers
        from netwatch.enrich.ranges import load_range_matcher

        histories, list_problems = load_matchers()
        ranges, range_problems = load_range_matcher()
        lists = [*histories, *([ranges] if ranges is not None else [])]
        problems = {**problems, **list_problems, **range_problems}
    resolver: OwnerResolver | None = None
    if rdap:
        from netwatch.enrich.rdap import RdapResolver

        rdap_resolver = RdapResolver()
        if rdap_resolver.cache is not None and rdap_resolver.cache.replaced:
            problems[str(rdap_resolver.cache_path)] = rdap_resolver.cache.replaced
        resolver = rdap_resolver
    from netwatch.enrich.providers import bundled as bundled_providers

    return Enricher(
        GeoLookup(databases),
        rdap=resolver,
        lists=lists,
        problems=problems,
        fixed_lists=loaded,
        providers=bundled_providers(),
    )
