"""The text of the drill-down screens: alert, flow, process, remote. Pure (Rich Text only).

Each function takes model objects plus the latest snapshot (for the parent chain and a
process's other flows) and returns a `Text` a screen puts in a scrollable view; tests read the
plain text. Jurisdiction groups are labelled "commonly cited" because the 5/9/14 Eyes lists
are journalism, not treaty text. A recognised VPN provider gets its own section: operator,
country and groups, logging, audits and incidents, each with its source.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rich.text import Text

from netwatch.model import (
    Action,
    Alert,
    EnrichedFlow,
    Label,
    ProcessRef,
    ProviderFacts,
    RemoteInfo,
    Snapshot,
)
from netwatch.ui import fmt
from netwatch.ui.advice import advice_for
from netwatch.ui.stats import Rate

SEVERITY_STYLE = {
    "info": "dim",
    "low": "cyan",
    "medium": "yellow",
    "high": "bold red",
    "critical": "bold white on red",
}


def _heading(out: Text, title: str) -> None:
    out.append(f"\n{title}\n", style="bold underline")


def _field(out: Text, name: str, value: object) -> None:
    out.append(f"  {name:<14}", style="bold")
    out.append(f"{'-' if value is None or value == '' else value}\n")


def processes_in(snapshot: Snapshot | None) -> dict[int, ProcessRef]:
    """Every process the snapshot mentions, by pid (flows and alerts)."""
    found: dict[int, ProcessRef] = {}
    if snapshot is None:
        return found
    for ef in snapshot.flows:
        if ef.flow.process is not None:
            found.setdefault(ef.flow.process.pid, ef.flow.process)
    for a in snapshot.alerts:
        if a.process is not None:
            found.setdefault(a.process.pid, a.process)
    return found


def parent_chain(p: ProcessRef, known: dict[int, ProcessRef]) -> list[str]:
    """`name (pid)` of each ancestor the snapshot knows, then the first unknown ppid."""
    chain: list[str] = []
    seen = {p.pid}
    ppid = p.ppid
    while ppid is not None and ppid not in seen and len(chain) < 16:
        seen.add(ppid)
        parent = known.get(ppid)
        if parent is None:
            chain.append(f"pid {ppid}")
            break
        chain.append(f"{parent.name} ({parent.pid})")
        ppid = parent.ppid
    return chain


def process_section(out: Text, p: ProcessRef | None, snapshot: Snapshot | None) -> None:
    """Process: name, pid, user, exe, cmdline, parent chain."""
    _heading(out, "Process")
    if p is None:
        out.append("  unknown: the socket's owner could not be seen (other user without\n")
        out.append("  privileges, raw traffic, or a capture file)\n")
        return
    _field(out, "name", f"{p.name} (pid {p.pid})")
    _field(out, "user", p.user)
    _field(out, "exe", p.exe)
    _field(out, "cmdline", " ".join(p.cmdline))
    chain = parent_chain(p, processes_in(snapshot))
    _field(out, "parents", " <- ".join(chain) if chain else None)
    _field(out, "started", fmt.when(p.create_time))


def remote_section(out: Text, r: RemoteInfo | None) -> None:
    """Remote: address, scope, country, ASN, jurisdiction, RDAP owner, lists, data sources."""
    _heading(out, "Remote")
    if r is None:
        out.append("  none (listening socket)\n")
        return
    _field(out, "address", f"{r.ip} ({r.scope.value})")
    _field(out, "country", fmt.country(r) or "unknown")
    _field(out, "network", fmt.asn(r) or "unknown")
    groups = ", ".join(r.jurisdiction) if r.jurisdiction else "none"
    _field(out, "jurisdiction", f"{groups} (commonly cited groupings)")
    _field(out, "RDAP owner", fmt.owner(r.owner))
    if r.owner is not None and r.owner.cidr:
        _field(out, "  range", r.owner.cidr)
    if r.owner is not None and r.owner.abuse_emails:
        _field(out, "  abuse", ", ".join(r.owner.abuse_emails))
    for hit in r.lists:
        _field(out, "listed in", f"{hit.list}" + (f": {hit.detail}" if hit.detail else ""))
    for s in r.sources:
        built = fmt.when(s.built)[:10] if s.built else "date unknown"
        _field(out, "source", f"{s.type} {s.file} ({built})")


def provider_section(out: Text, p: ProviderFacts | None) -> None:
    """Provider: who runs the far end, its country and groups, what it logs, its audits and
    incidents, each with the page it rests on (nothing when no provider is recognised)."""
    if p is None:
        return
    _heading(out, "Provider")
    _field(out, "name", p.name)
    _field(out, "operator", p.operator)
    if p.has_operator:
        groups = ", ".join(p.groups) if p.groups else "none"
        _field(out, "country", p.country or p.country_note or "not established")
        _field(out, "groups", f"{groups} (commonly cited groupings)")
    _field(out, "logging", p.logging)
    _field(out, "source", f"{p.source} (checked {p.checked})")
    for f in p.facts:
        _field(out, "fact", f"{f.text} ({f.url}, checked {f.checked})")
    if p.has_operator and not p.audits:
        _field(out, "audits", "none published")
    for a in p.audits:
        _field(out, "audit", f"{a.auditor} {a.year}: {a.scope} ({a.url})")
    if p.has_operator and not p.incidents:
        _field(out, "incidents", "none known")
    for i in p.incidents:
        _field(out, "incident", f"{i.year}: {i.what} ({i.url})")


def label_section(out: Text, lab: Label | None) -> None:
    """What the flow was recognised as, how sure (`guess` when only the port says so), and
    each piece of evidence the label rests on."""
    if lab is None:
        return
    _heading(out, "Label")
    _field(out, "protocol", f"{lab.name} ({lab.category})")
    _field(out, "confidence", lab.confidence.value)
    for e in lab.evidence:
        _field(out, e.name, e.value)


def alert_detail(alert: Alert, snapshot: Snapshot | None, now: float) -> Text:
    """The alert screen: what, evidence, process, remote, flow, and what to do about it."""
    out = Text()
    sev = fmt.severity(alert.severity)
    out.append(f"[{sev}] ", style=SEVERITY_STYLE.get(alert.severity.value, ""))
    out.append(f"{alert.title}\n", style="bold")
    out.append(f"{alert.message}\n")
    _field(out, "rule", alert.rule_id)
    _field(out, "state", alert.state.value)
    if alert.action is Action.LOG:
        _field(out, "policy", "log: kept for the record, not raised")
    _field(out, "seen", f"{alert.count}x, first {fmt.when(alert.first_seen)}")
    _field(
        out, "last seen", f"{fmt.when(alert.last_seen)} ({fmt.duration(now - alert.last_seen)} ago)"
    )
    if alert.flow_key is not None:
        k = alert.flow_key
        _field(out, "flow", f"{k.transport.value} {k.local} -> {k.remote or '*'}")
    _heading(out, "Evidence")
    for e in alert.evidence:
        out.append(f"  {e.name}: ", style="bold")
        out.append(f"{e.value}\n")
    if not alert.evidence:
        out.append("  (none recorded)\n")
    label_section(out, alert.label)
    process_section(out, alert.process, snapshot)
    remote_section(out, alert.remote)
    provider_section(out, alert.remote.provider if alert.remote else None)
    _heading(out, "What to do")
    for line in advice_for(alert):
        out.append(f"  {line}\n")
    return out


def flow_detail(
    ef: EnrichedFlow, rate: Rate, snapshot: Snapshot | None, alerts: Iterable[Alert], now: float
) -> Text:
    """The flow screen: endpoints, names, label with evidence, counters, process, remote."""
    f = ef.flow
    out = Text()
    out.append(f"{fmt.proto(ef)}  {f.key.local} -> {f.key.remote or '*'}\n", style="bold")
    _field(out, "transport", f.key.transport.value)
    _field(out, "direction", f.direction.value)
    _field(out, "state", f.state)
    _field(out, "DNS name", f.dns_name)
    _field(out, "TLS SNI", f.sni)
    _field(out, "HTTP host", f.http_host)
    if f.tls_cert is not None:
        _field(out, "cert subject", f.tls_cert.subject)
        _field(out, "cert issuer", f.tls_cert.issuer)
        _field(out, "cert SAN", ", ".join(f.tls_cert.san) or None)
    up = f"{fmt.size(f.bytes_sent)} ({fmt.rate(rate.up) or '-'}/s)"
    down = f"{fmt.size(f.bytes_received)} ({fmt.rate(rate.down) or '-'}/s)"
    _field(out, "sent", up)
    _field(out, "received", down)
    _field(out, "packets", f"{f.packets_sent or '-'} out / {f.packets_received or '-'} in")
    first = None if f.first_seen is None else now - f.first_seen
    _field(out, "age", fmt.duration(first))
    _field(out, "attribution", f.attribution.value)
    if f.container is not None:
        _field(out, "container", f.container.summary())
    label_section(out, f.label)
    process_section(out, f.process, snapshot)
    remote_section(out, ef.remote)
    provider_section(out, ef.remote.provider if ef.remote else None)
    related = [a for a in alerts if a.flow_key == f.key]
    if related:
        _heading(out, "Alerts on this flow")
        for a in related:
            out.append(f"  [{fmt.severity(a.severity)}] {a.title} ({a.count}x)\n")
    return out


def process_summary(
    name: str, flows: Sequence[EnrichedFlow], alerts: Iterable[Alert], snapshot: Snapshot | None
) -> Text:
    """The process view's header: identity, totals, countries, alerts."""
    out = Text()
    procs = {ef.flow.process.pid: ef.flow.process for ef in flows if ef.flow.process}
    out.append(f"{name}: {len(flows)} flows, {len(procs)} process(es)\n", style="bold")
    up = sum(ef.flow.bytes_sent or 0 for ef in flows)
    down = sum(ef.flow.bytes_received or 0 for ef in flows)
    _field(out, "sent", fmt.size(up))
    _field(out, "received", fmt.size(down))
    countries: dict[str, int] = {}
    for ef in flows:
        code = fmt.country(ef.remote)
        if code:
            countries[code] = countries.get(code, 0) + 1
    spread = ", ".join(f"{c} x{n}" for c, n in sorted(countries.items(), key=lambda kv: -kv[1]))
    _field(out, "countries", spread or None)
    mine = [a for a in alerts if a.process is not None and a.process.name == name]
    _heading(out, f"Alerts ({len(mine)})")
    for a in mine:
        out.append(f"  [{fmt.severity(a.severity)}] {a.title} ({a.count}x)\n")
    for p in list(procs.values())[:3]:
        process_section(out, p, snapshot)
    return out
