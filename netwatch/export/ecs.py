"""ECS export: one Elastic Common Schema document per alert, as NDJSON.

Field choices follow ECS 8.x: `event.kind: alert`, `event.category: [network]`,
`event.type: [connection]`, `rule.*`, `process.*`, `source.*`/`destination.*` with
`geo.country_iso_code` and `as.number`/`as.organization.name`, `network.transport` (lower
case), `network.community_id` (`export.community_id`), `message`. The local side is `source`
(alerts do not say who initiated; netwatch watches its own host). Null values are left out,
as ECS producers do; netwatch-specific fields live under `netwatch.*`, the flow's label as
`netwatch.label.{name,category,vpn,confidence,evidence}`, the far end's operator as
`netwatch.provider.{id,name,kind,operator,country,groups,logging,audits,incidents,...}` with
`audit_count` and `incident_count` (ECS's `organization.*` is the observer's own).
"""

from __future__ import annotations

import json
from typing import Any

from netwatch import codec
from netwatch.export.community_id import PROTO_NUMBERS, community_id_v1
from netwatch.export.schema import iso_time
from netwatch.model import Alert, RemoteInfo

ECS_VERSION = "8.11.0"


def _prune(d: dict[str, Any]) -> dict[str, Any]:
    """Drop None values and empty objects, recursively."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            v = _prune(v)
            if not v:
                continue
        if v is None or v == []:
            continue
        out[k] = v
    return out


def _peer(ip: str | None, port: int | None, remote: RemoteInfo | None) -> dict[str, Any]:
    geo = as_ = None
    if remote is not None:
        geo = {"country_iso_code": remote.country}
        as_ = {"number": remote.asn, "organization": {"name": remote.as_org}}
    return {"ip": ip, "port": port, "geo": geo, "as": as_}


def _provider(a: Alert) -> dict[str, Any] | None:
    """`netwatch.provider.*`: ECS's `organization.*` describes the observer's own
    organisation, not the peer's, so the far end's operator is a netwatch custom field."""
    p = a.remote.provider if a.remote else None
    if p is None:
        return None
    d = codec.provider_to_dict(p)
    return {**d, "audit_count": len(p.audits), "incident_count": len(p.incidents)}


def _community_id(a: Alert) -> str | None:
    k = a.flow_key
    if k is None or k.remote is None or k.transport not in PROTO_NUMBERS:
        return None
    if k.local.ip.version != k.remote.ip.version:
        return None
    return community_id_v1(
        k.local.ip, k.remote.ip, PROTO_NUMBERS[k.transport], k.local.port, k.remote.port
    )


def ecs_document(a: Alert) -> dict[str, Any]:
    """The alert as a nested ECS document (None fields removed)."""
    k, p = a.flow_key, a.process
    source = destination = None
    if k is not None:
        source = _peer(str(k.local.ip), k.local.port, None)
        rip = k.remote.ip if k.remote else (a.remote.ip if a.remote else None)
        destination = _peer(
            None if rip is None else str(rip), k.remote.port if k.remote else None, a.remote
        )
    elif a.remote is not None:
        destination = _peer(str(a.remote.ip), None, a.remote)
    process = None
    if p is not None:
        process = {
            "pid": p.pid,
            "name": p.name,
            "executable": p.exe,
            "args": list(p.cmdline),
            "command_line": " ".join(p.cmdline) or None,
            "parent": {"pid": p.ppid},
            "user": {"name": p.user},
            "start": iso_time(p.create_time),
        }
    doc = {
        "@timestamp": iso_time(a.last_seen),
        "ecs": {"version": ECS_VERSION},
        "event": {
            "kind": "alert",
            "category": ["network"],
            "type": ["connection"],
            "id": a.id,
            "severity": a.severity.rank,
            "start": iso_time(a.first_seen),
            "end": iso_time(a.last_seen),
            "module": "netwatch",
            "dataset": "netwatch.alert",
        },
        "rule": {"id": a.rule_id, "name": a.title, "ruleset": "netwatch"},
        "process": process,
        "source": source,
        "destination": destination,
        "network": {
            "transport": k.transport.value if k else None,
            "type": None if k is None else f"ipv{k.local.ip.version}",
            "community_id": _community_id(a),
        },
        "message": a.message,
        "tags": list(a.tags),
        "log": {"level": a.severity.value},
        "netwatch": {
            "severity": a.severity.value,
            "identifier": a.identifier,
            "count": a.count,
            "state": a.state.value,
            "action": a.action.value,
            "evidence": [{"name": e.name, "value": e.value} for e in a.evidence],
            "jurisdiction": list(a.remote.jurisdiction) if a.remote else None,
            "label": codec.label_to_dict(a.label),
            "provider": _provider(a),
        },
    }
    return _prune(doc)


def format_ecs(a: Alert) -> str:
    """One alert as a compact NDJSON line (no newline)."""
    return json.dumps(ecs_document(a), separators=(",", ":"), ensure_ascii=False)
