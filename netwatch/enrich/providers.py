"""VPN and anonymizer operators (`providers.toml`): parse, validate, and find a flow's provider.

The facts are data, like the 5/9/14 Eyes groups: the bundled `providers.toml` is versioned,
every fact in it names its public source and the day it was checked, and it is validated
once. A file with the same shape can be checked and shown with `netwatch providers --file`;
a damaged one is one `DataFileError` naming the file and key, never a traceback.

A flow's provider is found by what netwatch recognised, strongest first: the remote address
on a provider's list (VPN Gate relays, Tor relays, a provider's published ranges), then a
server name the flow showed (SNI, HTTP Host, DNS name, certificate SAN), then its label. A
protocol label alone (OpenVPN, WireGuard, ...) names no operator: it maps to `self-hosted`.
Only VPN-labelled flows get a provider, except for the relay lists (VPN Gate, Tor), where
every flow to a listed address goes through that relay's operator; a provider's ranges may
hold its other services too (Cloudflare's WARP ranges carry non-WARP ports).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from netwatch.enrich.datafile import read_toml
from netwatch.enrich.jurisdiction import Jurisdictions
from netwatch.enrich.jurisdiction import bundled as bundled_jurisdictions
from netwatch.errors import DataFileError, Location, one_line
from netwatch.model import Audit, Fact, Flow, Incident, ListHit, ProviderFacts
from netwatch.model.provider import NO_OPERATOR_KINDS

BUNDLED = "providers.toml"
KINDS = frozenset({"commercial", "academic", "relay", "mesh"}) | NO_OPERATOR_KINDS
RELAY_LISTS = frozenset({"vpngate", "tor"})
"""Lists of relays: every flow to a listed address goes through that operator's relay."""
_ISO_3166 = """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO
    BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK
    DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR
    GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM
    KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP
    MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL
    PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST
    SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG
    VI VN VU WF WS YE YT ZA ZM ZW"""
ISO_3166 = frozenset(_ISO_3166.split())
"""ISO 3166-1 alpha-2 codes in use (https://www.iso.org/iso-3166-country-codes.html)."""
_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
_HOST = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$")
_MAX_TEXT = 600
_MAX_NAME = 253
FIRST_YEAR = 1990
"""No VPN audit or incident predates this; a smaller year is a typo."""


@dataclass(frozen=True, slots=True)
class ProviderTable:
    """Every provider, with lookup tables by label, list and host name."""

    version: str
    checked: str
    providers: tuple[ProviderFacts, ...]
    context: tuple[Incident, ...]
    """Public cases that explain the stakes but belong to no entry (Lavabit, 2013)."""
    by_label: Mapping[str, ProviderFacts]
    by_list: Mapping[str, ProviderFacts]
    by_host: Mapping[str, ProviderFacts]

    def named(self, name: str) -> ProviderFacts | None:
        """The entry with this id, name, label or list name (case-insensitive)."""
        key = name.strip().casefold()
        for p in self.providers:
            if key in (p.id, p.name.casefold()):
                return p
        return self.by_label.get(key) or self.by_list.get(key)

    def for_lists(self, hits: Iterable[ListHit], relays_only: bool = False) -> ProviderFacts | None:
        """The provider of the first list hit that names one (relay lists only, if asked)."""
        for h in hits:
            if relays_only and h.list not in RELAY_LISTS:
                continue
            found = self.by_list.get(h.list)
            if found is not None:
                return found
        return None

    def for_host(self, name: str | None) -> ProviderFacts | None:
        """The provider whose host suffix `name` ends in, on whole DNS labels."""
        if not name or len(name) > _MAX_NAME:
            return None
        parts = name.rstrip(".").lower().split(".")
        for i in range(len(parts) - 1):
            found = self.by_host.get(".".join(parts[i:]))
            if found is not None:
                return found
        return None

    def for_flow(self, flow: Flow, hits: Iterable[ListHit]) -> ProviderFacts | None:
        """Who runs the far end of `flow`: by its address's lists, names, then label.

        A flow with no VPN label gets a provider only from a relay list (VPN Gate, Tor).
        """
        label = flow.label
        if label is None or not label.vpn:
            return self.for_lists(hits, relays_only=True)
        found = self.for_lists(hits)
        if found is not None:
            return found
        cert = flow.tls_cert
        for name in (flow.sni, flow.http_host, *(cert.san if cert else ()), flow.dns_name):
            found = self.for_host(name)
            if found is not None:
                return found
        return self.by_label.get(label.name)


class _EntryError(Exception):
    """A located problem inside the file (key path and reason)."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(reason)
        self.key = key
        self.reason = reason


def _shown(value: object) -> str:
    text = repr(value)
    return one_line(text if len(text) <= 60 else text[:57] + "...")


def _text(d: Mapping[str, Any], key: str, where: str, *, optional: bool = False) -> str | None:
    value = d.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.strip():
        raise _EntryError(f"{where}.{key}", f"{_shown(value)} is not a non-empty string")
    if len(value) > _MAX_TEXT or not value.isprintable():
        raise _EntryError(
            f"{where}.{key}", f"must be one printable line of at most {_MAX_TEXT} characters"
        )
    return value


def _req(d: Mapping[str, Any], key: str, where: str) -> str:
    value = _text(d, key, where)
    assert value is not None  # noqa: S101  # _text raises unless optional
    return value


def _url(d: Mapping[str, Any], key: str, where: str) -> str:
    value = _req(d, key, where)
    if not value.startswith("https://") or " " in value or len(value) <= len("https://"):
        raise _EntryError(f"{where}.{key}", f"{_shown(value)} is not an https URL")
    return value


def _day(d: Mapping[str, Any], key: str, where: str) -> str:
    value = d.get(key)
    if isinstance(value, date):  # TOML's bare local dates arrive as datetime.date
        value = value.isoformat()
    if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise _EntryError(f"{where}.{key}", f"{_shown(value)} is not a date (YYYY-MM-DD)")
    try:
        date.fromisoformat(value)
    except ValueError:
        raise _EntryError(f"{where}.{key}", f"{_shown(value)} is not a date (YYYY-MM-DD)") from None
    return value


def _year(d: Mapping[str, Any], where: str, checked: str) -> int:
    value = d.get("year")
    last = int(checked[:4])
    if isinstance(value, bool) or not isinstance(value, int) or not FIRST_YEAR <= value <= last:
        raise _EntryError(
            f"{where}.year", f"{_shown(value)} is not a year from {FIRST_YEAR} to {last}"
        )
    return value


def _names(d: Mapping[str, Any], key: str, where: str, pattern: re.Pattern[str]) -> list[str]:
    value = d.get(key, [])
    if not isinstance(value, list):
        raise _EntryError(f"{where}.{key}", f"{_shown(value)} is not a list")
    for j, item in enumerate(value):
        if not isinstance(item, str) or not pattern.match(item):
            raise _EntryError(f"{where}.{key}[{j}]", f"{_shown(item)} is not a valid name")
    return value


def _tables(d: Mapping[str, Any], key: str, where: str) -> list[tuple[str, Mapping[str, Any]]]:
    value = d.get(key, [])
    if not isinstance(value, list):
        raise _EntryError(f"{where}.{key}", f"{_shown(value)} is not a list of tables")
    out: list[tuple[str, Mapping[str, Any]]] = []
    for j, item in enumerate(value):
        if not isinstance(item, dict):
            raise _EntryError(f"{where}.{key}[{j}]", f"{_shown(item)} is not a table")
        out.append((f"{where}.{key}[{j}]", item))
    return out


def _incident(where: str, d: Mapping[str, Any], checked: str) -> Incident:
    return Incident(
        _year(d, where, checked),
        _req(d, "what", where),
        _url(d, "url", where),
        _day(d, "checked", where),
    )


def _provider(where: str, d: Mapping[str, Any], groups: Jurisdictions) -> ProviderFacts:
    pid = d.get("id")
    if not isinstance(pid, str) or not _ID.match(pid):
        raise _EntryError(f"{where}.id", f"{_shown(pid)} is not an id (lower case, digits, '-')")
    kind = _req(d, "kind", where)
    if kind not in KINDS:
        raise _EntryError(
            f"{where}.kind", f"{_shown(kind)} is not one of {', '.join(sorted(KINDS))}"
        )
    country = _text(d, "country", where, optional=True)
    note = _text(d, "country_note", where, optional=True)
    if country is not None and country not in ISO_3166:
        raise _EntryError(
            f"{where}.country", f"{_shown(country)} is not an ISO 3166-1 alpha-2 code"
        )
    if country is None and kind not in NO_OPERATOR_KINDS and note is None:
        raise _EntryError(
            f"{where}.country", "missing: give the operator's country or a country_note"
        )
    checked = _day(d, "checked", where)
    return ProviderFacts(
        id=pid,
        name=_req(d, "name", where),
        kind=kind,
        operator=_req(d, "operator", where),
        country=country,
        groups=groups.of(country),
        country_note=note,
        logging=_text(d, "logging", where, optional=True),
        source=_url(d, "source", where),
        checked=checked,
        facts=tuple(
            Fact(_req(f, "text", w), _url(f, "url", w), _day(f, "checked", w))
            for w, f in _tables(d, "fact", where)
        ),
        audits=tuple(
            Audit(
                _req(a, "auditor", w),
                _year(a, w, _day(a, "checked", w)),
                _req(a, "scope", w),
                _url(a, "url", w),
                _day(a, "checked", w),
            )
            for w, a in _tables(d, "audit", where)
        ),
        incidents=tuple(
            _incident(w, i, _day(i, "checked", w)) for w, i in _tables(d, "incident", where)
        ),
    )


def _index(table: dict[str, ProviderFacts], names: list[str], p: ProviderFacts, key: str) -> None:
    for j, name in enumerate(names):
        other = table.get(name)
        if other is not None and other is not p:
            raise _EntryError(f"{key}[{j}]", f"{name!r} already belongs to {other.id!r}")
        table[name] = p


def _parse(data: Mapping[str, Any], groups: Jurisdictions) -> ProviderTable:
    version = _req(data, "version", "(top)")
    checked = _day(data, "checked", "(top)")
    raw = _tables(data, "provider", "(top)")
    if not raw:
        raise _EntryError("provider", "needs at least one [[provider]]")
    providers: list[ProviderFacts] = []
    by_label: dict[str, ProviderFacts] = {}
    by_list: dict[str, ProviderFacts] = {}
    by_host: dict[str, ProviderFacts] = {}
    for where, item in raw:
        where = where.removeprefix("(top).")
        p = _provider(where, item, groups)
        if any(q.id == p.id for q in providers):
            raise _EntryError(f"{where}.id", f"duplicate id {p.id!r}")
        _index(by_label, _names(item, "labels", where, _ID), p, f"{where}.labels")
        _index(by_list, _names(item, "lists", where, _ID), p, f"{where}.lists")
        _index(by_host, _names(item, "hosts", where, _HOST), p, f"{where}.hosts")
        providers.append(p)
    context = tuple(
        _incident(w.removeprefix("(top)."), c, checked)
        for w, c in _tables(data, "context", "(top)")
    )
    return ProviderTable(version, checked, tuple(providers), context, by_label, by_list, by_host)


def parse(
    data: Mapping[str, Any], origin: str, groups: Jurisdictions | None = None
) -> ProviderTable:
    """Validate the TOML structure and build the lookup tables; errors name origin and key."""
    try:
        return _parse(data, groups if groups is not None else bundled_jurisdictions())
    except _EntryError as exc:
        raise DataFileError(exc.reason, Location(origin, key=exc.key)) from None


def load(path: Path | None = None) -> ProviderTable:
    """Load a providers file (the bundled one when `path` is None)."""
    if path is None:
        return bundled()
    return parse(read_toml(path), str(path))


@cache
def bundled() -> ProviderTable:
    """Load and validate the bundled table once per process."""
    text = resources.files(__package__).joinpath(BUNDLED).read_text(encoding="utf-8")
    return parse(tomllib.loads(text), BUNDLED)
