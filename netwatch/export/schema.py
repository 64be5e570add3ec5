"""The alert-log column table: one name, unit and description per exported field.

CSV uses these columns as its fixed header, in this order; syslog and ECS draw their fields
from the same getters, so the formats cannot drift apart. `netwatch export --help` and the
README point here. Changing a name or the order is a breaking change of the CSV contract.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from netwatch.model import Alert, Evidence

Value = str | int | float | None


@dataclass(frozen=True, slots=True)
class Column:
    """One exported field: what it is called, its unit, what it means, how to read it."""

    name: str
    unit: str
    description: str
    get: Callable[[Alert], Value]


def iso_time(ts: float) -> str:
    """Epoch seconds as RFC 3339 UTC with microseconds: `2024-01-02T03:04:05.000006Z`."""
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def remote_ip(a: Alert) -> str | None:
    """The remote address: from the enrichment if present, else from the flow key."""
    if a.remote is not None:
        return str(a.remote.ip)
    if a.flow_key is not None and a.flow_key.remote is not None:
        return str(a.flow_key.remote.ip)
    return None


def remote_port(a: Alert) -> int | None:
    """The remote port, when the alert carries a flow."""
    if a.flow_key is None or a.flow_key.remote is None:
        return None
    return a.flow_key.remote.port


def pairs_text(items: Iterable[Evidence]) -> str:
    """Evidence as `name=value; name=value` (CSV and syslog have no nested values)."""
    return "; ".join(f"{e.name}={e.value}" for e in items)


def evidence_text(a: Alert) -> str:
    """The rule's evidence: the conditions that matched, as `name=value; ...`."""
    return pairs_text(a.evidence)


def provider_name(a: Alert) -> str | None:
    """Who runs the far end (`VPN Gate`, `Mullvad VPN`), when netwatch knows the provider."""
    p = a.remote.provider if a.remote else None
    return None if p is None else p.name


def provider_country(a: Alert) -> str | None:
    """The provider operator's country (not the server's: see `country`)."""
    p = a.remote.provider if a.remote else None
    return None if p is None else p.country


def provider_groups(a: Alert) -> str | None:
    """The 5/9/14 Eyes groups of the operator's country, `;`-separated."""
    p = a.remote.provider if a.remote else None
    return None if p is None else ";".join(p.groups)


def provider_audits(a: Alert) -> int | None:
    """How many independent audits the provider published (None: no provider known)."""
    p = a.remote.provider if a.remote else None
    return None if p is None else len(p.audits)


def provider_incidents(a: Alert) -> int | None:
    """How many public cases of logs or keys handed over, seized or found absent."""
    p = a.remote.provider if a.remote else None
    return None if p is None else len(p.incidents)


def label_name(a: Alert) -> str | None:
    """What the alert's flow was taken for (`openvpn`, `tls`, ...), None without a label."""
    return None if a.label is None else a.label.name


def label_confidence(a: Alert) -> str | None:
    """How sure that label is: guess (port alone), low, medium or high."""
    return None if a.label is None else a.label.confidence.value


def label_evidence_text(a: Alert) -> str | None:
    """What the dissector saw to give the label, as `name=value; ...`."""
    return None if a.label is None else pairs_text(a.label.evidence)


COLUMNS: tuple[Column, ...] = (
    Column("id", "", "alert id, stable across updates of the same alert", lambda a: a.id),
    Column("rule", "", "dotted rule id, e.g. vpn.unexpected_process", lambda a: a.rule_id),
    Column("title", "", "rule title", lambda a: a.title),
    Column("severity", "", "info, low, medium, high or critical", lambda a: a.severity.value),
    Column("state", "", "open or closed", lambda a: a.state.value),
    Column(
        "first_seen",
        "RFC 3339 UTC",
        "when the condition was first seen",
        lambda a: iso_time(a.first_seen),
    ),
    Column("last_seen", "RFC 3339 UTC", "when it was last seen", lambda a: iso_time(a.last_seen)),
    Column("count", "occurrences", "how often it was seen since first_seen", lambda a: a.count),
    Column(
        "process",
        "",
        "name of the process that owns the flow",
        lambda a: a.process.name if a.process else None,
    ),
    Column("pid", "", "its process id", lambda a: a.process.pid if a.process else None),
    Column("exe", "path", "its executable", lambda a: a.process.exe if a.process else None),
    Column("user", "", "the user it runs as", lambda a: a.process.user if a.process else None),
    Column(
        "transport",
        "",
        "tcp, udp, ...",
        lambda a: a.flow_key.transport.value if a.flow_key else None,
    ),
    Column(
        "local_ip",
        "",
        "this host's address",
        lambda a: str(a.flow_key.local.ip) if a.flow_key else None,
    ),
    Column(
        "local_port",
        "",
        "this host's port",
        lambda a: a.flow_key.local.port if a.flow_key else None,
    ),
    Column("remote_ip", "", "the peer's address", remote_ip),
    Column("remote_port", "", "the peer's port", remote_port),
    Column(
        "country",
        "ISO 3166-1 alpha-2",
        "the peer's country",
        lambda a: a.remote.country if a.remote else None,
    ),
    Column(
        "asn",
        "",
        "the peer's autonomous system number",
        lambda a: a.remote.asn if a.remote else None,
    ),
    Column(
        "as_org",
        "",
        "the peer's autonomous system organisation",
        lambda a: a.remote.as_org if a.remote else None,
    ),
    Column(
        "jurisdiction",
        "",
        "5/9/14 Eyes groups of the country, `;`-separated",
        lambda a: ";".join(a.remote.jurisdiction) if a.remote else None,
    ),
    Column("identifier", "", "the dedup key of the alert", lambda a: a.identifier),
    Column("message", "", "one-line description", lambda a: a.message),
    Column("evidence", "", "what matched, as `name=value; ...`", evidence_text),
    Column("tags", "", "rule tags, `;`-separated", lambda a: ";".join(a.tags)),
    Column(
        "action",
        "",
        "the policy's action: alert, or log (for the record, shown dimmed)",
        lambda a: a.action.value,
    ),
    Column("label", "", "what the flow was recognised as (openvpn, tls, ...)", label_name),
    Column("label_confidence", "", "guess (port alone), low, medium or high", label_confidence),
    Column(
        "label_evidence", "", "what the label rests on, as `name=value; ...`", label_evidence_text
    ),
    Column("provider", "", "who runs the far end (VPN Gate, Mullvad VPN, ...)", provider_name),
    Column(
        "provider_country",
        "ISO 3166-1 alpha-2",
        "the provider operator's country",
        provider_country,
    ),
    Column(
        "provider_groups", "", "5/9/14 Eyes groups of that country, `;`-separated", provider_groups
    ),
    Column("provider_audits", "audits", "independent audits it published", provider_audits),
    Column(
        "provider_incidents",
        "incidents",
        "public cases of logs or keys handed over, seized or found absent",
        provider_incidents,
    ),
)

HEADER: tuple[str, ...] = tuple(c.name for c in COLUMNS)


def row(a: Alert) -> list[Value]:
    """The alert as values in `HEADER` order."""
    return [c.get(a) for c in COLUMNS]


def describe() -> str:
    """The column table as Markdown, for the README and `export --help`."""
    lines = ["| column | unit | meaning |", "|---|---|---|"]
    lines += [f"| `{c.name}` | {c.unit} | {c.description} |" for c in COLUMNS]
    return "\n".join(lines)
