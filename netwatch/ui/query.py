"""The dashboard's filter language: `proc:vpnclient country:RU vpn:true port:443 -dir:in`.

Pure: parses a query string into a `Query` and matches `EnrichedFlow`s. Terms are ANDed; a
field may list alternatives with commas (`country:RU,CN`); `-` or `!` negates a term; a bare
word matches any displayed text (process, addresses, names, country, organisation, label).
Imports only the model; no Textual, so it is tested without a terminal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from netwatch.model import EnrichedFlow

Matcher = Callable[[EnrichedFlow, str], bool]


def _lower(value: object) -> str:
    return "" if value is None else str(value).lower()


def _proc(ef: EnrichedFlow, v: str) -> bool:
    p = ef.flow.process
    if p is None:
        return v in ("unknown", "?", "none")
    return v in p.name.lower() or v == str(p.pid)


def _pid(ef: EnrichedFlow, v: str) -> bool:
    p = ef.flow.process
    return p is not None and str(p.pid) == v


def _user(ef: EnrichedFlow, v: str) -> bool:
    p = ef.flow.process
    return p is not None and p.user is not None and v == p.user.lower()


def _country(ef: EnrichedFlow, v: str) -> bool:
    r = ef.remote
    return r is not None and r.country is not None and r.country.lower() == v


def _asn(ef: EnrichedFlow, v: str) -> bool:
    r = ef.remote
    if r is None:
        return False
    number = v.removeprefix("as")
    if number.isdecimal():
        return r.asn is not None and str(r.asn) == number
    return v in _lower(r.as_org)


def _org(ef: EnrichedFlow, v: str) -> bool:
    r = ef.remote
    if r is None:
        return False
    owner = r.owner.name if r.owner is not None else None
    return v in _lower(r.as_org) or v in _lower(owner)


def _port(ef: EnrichedFlow, v: str) -> bool:
    k = ef.flow.key
    ports = {str(k.local.port)} | ({str(k.remote.port)} if k.remote else set())
    return v in ports


def _rport(ef: EnrichedFlow, v: str) -> bool:
    k = ef.flow.key
    return k.remote is not None and str(k.remote.port) == v


def _lport(ef: EnrichedFlow, v: str) -> bool:
    return str(ef.flow.key.local.port) == v


def _ip(ef: EnrichedFlow, v: str) -> bool:
    k = ef.flow.key
    return (k.remote is not None and str(k.remote.ip).startswith(v)) or str(k.local.ip).startswith(
        v
    )


def _name(ef: EnrichedFlow, v: str) -> bool:
    f = ef.flow
    return any(v in _lower(n) for n in (f.dns_name, f.sni, f.http_host))


def _proto(ef: EnrichedFlow, v: str) -> bool:
    f = ef.flow
    label = f.label
    return v == f.key.transport.value or (
        label is not None and v in (label.name.lower(), label.category.lower())
    )


def _bool(value: bool, v: str) -> bool:
    return value == (v in ("true", "yes", "1", "on", "y"))


def _vpn(ef: EnrichedFlow, v: str) -> bool:
    label = ef.flow.label
    return _bool(label is not None and label.vpn, v)


def _dir(ef: EnrichedFlow, v: str) -> bool:
    d = ef.flow.direction.value
    return d == v or d.startswith(v)


def _eyes(ef: EnrichedFlow, v: str) -> bool:
    r = ef.remote
    if r is None:
        return v in ("none", "no")
    groups = [g.lower() for g in r.jurisdiction]
    if v in ("none", "no"):
        return not groups
    return any(g == v or g.split()[0] == v for g in groups)


def _list(ef: EnrichedFlow, v: str) -> bool:
    r = ef.remote
    return r is not None and any(h.list.lower() == v for h in r.lists)


def _state(ef: EnrichedFlow, v: str) -> bool:
    return _lower(ef.flow.state) == v


FIELDS: dict[str, Matcher] = {
    "proc": _proc,
    "process": _proc,
    "pid": _pid,
    "user": _user,
    "country": _country,
    "cc": _country,
    "asn": _asn,
    "as": _asn,
    "org": _org,
    "port": _port,
    "rport": _rport,
    "lport": _lport,
    "ip": _ip,
    "host": _name,
    "name": _name,
    "proto": _proto,
    "app": _proto,
    "vpn": _vpn,
    "dir": _dir,
    "eyes": _eyes,
    "juris": _eyes,
    "list": _list,
    "state": _state,
}
"""Field names of the query language; aliases share a matcher."""

HELP = (
    "proc:NAME|PID  pid:N  user:U  country:CC  asn:N|ORG  org:TEXT  port:N  rport:N  lport:N  "
    "ip:PREFIX  name:TEXT  proto:tcp|openvpn|vpn  vpn:true|false  dir:in|out|listen  "
    "eyes:5|9|14|none  list:vpngate|tor  state:ESTABLISHED;  a,b = either;  -term or !term "
    "= not;  bare words search everything"
)


@dataclass(frozen=True, slots=True)
class Term:
    """One condition: a field (None for free text), its alternatives, and negation."""

    field: str | None
    values: tuple[str, ...]
    negated: bool = False


@dataclass(frozen=True, slots=True)
class Query:
    """A parsed query; `errors` lists terms that could not be understood (they are ignored)."""

    text: str = ""
    terms: tuple[Term, ...] = ()
    errors: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        """True when the query filters nothing."""
        return not self.terms


def parse(text: str) -> Query:
    """Parse a query; unknown fields and empty values become errors, never exceptions."""
    terms: list[Term] = []
    errors: list[str] = []
    for raw in text.split():
        word = raw
        negated = word[:1] in ("-", "!") and len(word) > 1
        if negated:
            word = word[1:]
        field, sep, value = word.partition(":")
        if not sep:
            terms.append(Term(None, (word.lower(),), negated))
            continue
        field = field.lower()
        if field not in FIELDS:
            errors.append(f"unknown field {field!r}")
            continue
        values = tuple(v for v in value.lower().split(",") if v)
        if not values:
            errors.append(f"{field}: needs a value")
            continue
        terms.append(Term(field, values, negated))
    return Query(text, tuple(terms), tuple(errors))


def _haystack(ef: EnrichedFlow) -> str:
    f, r = ef.flow, ef.remote
    parts: list[object] = [f.key.local, f.key.remote, f.dns_name, f.sni, f.http_host, f.state]
    parts.append(f.key.transport.value)
    if f.process is not None:
        parts += [f.process.name, f.process.pid, f.process.user, f.process.exe]
    if f.label is not None:
        parts += [f.label.name, f.label.category]
    if r is not None:
        parts += [r.country, r.as_org, r.asn, *r.jurisdiction, *(h.list for h in r.lists)]
        if r.owner is not None:
            parts.append(r.owner.name)
    return " ".join(_lower(p) for p in parts if p is not None)


def _term_matches(term: Term, ef: EnrichedFlow) -> bool:
    if term.field is None:
        hit = term.values[0] in _haystack(ef)
    else:
        matcher = FIELDS[term.field]
        hit = any(matcher(ef, v) for v in term.values)
    return hit != term.negated


def matches(query: Query, ef: EnrichedFlow) -> bool:
    """True when every term of the query holds for the flow."""
    return all(_term_matches(t, ef) for t in query.terms)
