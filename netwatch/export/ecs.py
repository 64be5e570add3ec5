"""ECS export: Elastic Common Schema documents for alerts and flow records, as NDJSON.

Field choices follow ECS 8.11 (the reference is the `ecs_flat.yml` of
https://github.com/elastic/ecs; `tests/data/ecs_fields.toml` holds the names and types of
every field written here, and a test checks each document against it field by field).

* Alerts are `event.kind: alert` with `rule.*`; flow records (`export.flowlog`) are
  `event.kind: event`, `event.type: [connection]` (plus `end` on a conversation's last record)
  with `event.reason` (`end`, `active_timeout`, `shutdown`), `event.start`/`end`/`duration`
  of the record's period and that period's `network.bytes`/`packets` and
  `source.*`/`destination.*` `.bytes`/`.packets`. Both have `event.category: [network]`.
* `source` is who initiated the conversation: this host for outbound flows, the remote side
  for inbound ones (the remote side's `geo`/`as` go with whichever side it is). Without a
  known direction (listening, unknown) this host is `source`, as before.
* `network.direction` is written from this host's point of view, as ECS asks of host-based
  monitoring: `egress` (this host initiated), `ingress` (the peer did), `unknown` otherwise,
  and for forwarded flows (routed through this host: neither end is this host, and without
  a list of internal networks netwatch cannot tell inbound from outbound). ECS's `inbound`/
  `outbound`/`internal`/`external` are for perimeter monitoring.
* `host.*` is this machine (hostname, architecture, `os.type`, `os.kernel`: read once);
  `observer.*` is netwatch itself (vendor and product `netwatch`, type `sensor`, version),
  on the same host (`observer.hostname`).
* `network.transport` (lower case), `network.type` (`ipv4`/`ipv6`), `network.community_id`
  (`export.community_id`), `network.protocol` (the flow's label: `tls`, `openvpn`, ...),
  `related.ip`; `process.*` with `parent.pid`, `user.name`, `start`; `container.name` and
  `container.runtime` where the flow's socket is in another network namespace
  (`Flow.container`). netwatch knows the namespace's inode, not the runtime's container id,
  so `container.id` is not written; the inode is `netwatch.container.netns`.

Null values are left out, as ECS producers do; netwatch-specific fields live under
`netwatch.*`: the flow's label as `netwatch.label.{name,category,vpn,confidence,evidence}`,
the far end's operator as `netwatch.provider.{id,name,kind,operator,country,groups,...}` with
`audit_count` and `incident_count` (ECS's `organization.*` is the observer's own), and for
flow records the running totals under `netwatch.flow.*`.
"""

from __future__ import annotations

import functools
import json
import platform
import socket
from dataclasses import dataclass
from typing import Any

from netwatch import __version__, codec
from netwatch.export.community_id import PROTO_NUMBERS, community_id_v1
from netwatch.export.flowlog import FlowReport
from netwatch.export.schema import iso_time
from netwatch.model import Alert, Direction, EnrichedFlow, FlowKey, ProcessRef, RemoteInfo

ECS_VERSION = "8.11.0"


@dataclass(frozen=True, slots=True)
class EcsHost:
    """This machine as `host.*` and `observer.*` describe it (read once: `this_host`)."""

    hostname: str | None
    architecture: str | None = None
    os_type: str | None = None
    os_kernel: str | None = None


@functools.cache
def this_host() -> EcsHost:
    """The hostname and `uname` of this machine; cheap, and read once per process."""
    u = platform.uname()
    system = u.system.lower() or None
    return EcsHost(
        hostname=socket.gethostname() or None,
        architecture=u.machine or None,
        os_type=system if system in ("linux", "macos", "unix", "windows") else None,
        os_kernel=u.release or None,
    )


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


def _sides(
    k: FlowKey | None, direction: Direction | None, remote: RemoteInfo | None
) -> tuple[dict[str, Any] | None, dict[str, Any] | None, bool]:
    """(`source`, `destination`, whether the remote side is `source`): the initiator first."""
    if k is None:
        return None, (None if remote is None else _peer(str(remote.ip), None, remote)), False
    local = _peer(str(k.local.ip), k.local.port, None)
    rip = k.remote.ip if k.remote else (remote.ip if remote else None)
    far = _peer(None if rip is None else str(rip), k.remote.port if k.remote else None, remote)
    if direction is Direction.INBOUND and rip is not None:
        return far, local, True
    return local, far, False


def network_direction(direction: Direction | None, forwarded: bool = False) -> str:
    """ECS `network.direction` from this host's point of view (see the module doc)."""
    if forwarded:
        return "unknown"
    if direction is Direction.OUTBOUND:
        return "egress"
    if direction is Direction.INBOUND:
        return "ingress"
    return "unknown"


def _host(h: EcsHost) -> dict[str, Any]:
    return {
        "hostname": h.hostname,
        "name": h.hostname,
        "architecture": h.architecture,
        "os": {"type": h.os_type, "kernel": h.os_kernel},
    }


def _observer(h: EcsHost) -> dict[str, Any]:
    return {
        "vendor": "netwatch",
        "product": "netwatch",
        "type": "sensor",
        "version": __version__,
        "hostname": h.hostname,
    }


def _process(p: ProcessRef | None) -> dict[str, Any] | None:
    if p is None:
        return None
    return {
        "pid": p.pid,
        "name": p.name,
        "executable": p.exe,
        "args": list(p.cmdline),
        "command_line": " ".join(p.cmdline) or None,
        "parent": {"pid": p.ppid},
        "user": {"name": p.user},
        "start": iso_time(p.create_time),
    }


def _provider(remote: RemoteInfo | None) -> dict[str, Any] | None:
    """`netwatch.provider.*`: ECS's `organization.*` describes the observer's own
    organisation, not the peer's, so the far end's operator is a netwatch custom field."""
    p = remote.provider if remote else None
    if p is None:
        return None
    d = codec.provider_to_dict(p)
    return {**d, "audit_count": len(p.audits), "incident_count": len(p.incidents)}


def _community_id(k: FlowKey | None) -> str | None:
    if k is None or k.remote is None or k.transport not in PROTO_NUMBERS:
        return None
    if k.local.ip.version != k.remote.ip.version:
        return None
    return community_id_v1(
        k.local.ip, k.remote.ip, PROTO_NUMBERS[k.transport], k.local.port, k.remote.port
    )


def _related(k: FlowKey | None, remote: RemoteInfo | None) -> list[str]:
    ips: list[str] = []
    if k is not None:
        ips.append(str(k.local.ip))
        if k.remote is not None:
            ips.append(str(k.remote.ip))
    if remote is not None and str(remote.ip) not in ips:
        ips.append(str(remote.ip))
    return ips


def _network(k: FlowKey | None, direction: str) -> dict[str, Any]:
    return {
        "transport": k.transport.value if k else None,
        "type": None if k is None else f"ipv{k.local.ip.version}",
        "community_id": _community_id(k),
        "direction": direction,
    }


def ecs_document(a: Alert, host: EcsHost | None = None) -> dict[str, Any]:
    """The alert as a nested ECS document (None fields removed)."""
    h = host or this_host()
    k = a.flow_key
    source, destination, _ = _sides(k, a.direction, a.remote)
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
        "process": _process(a.process),
        "source": source,
        "destination": destination,
        "network": _network(k, network_direction(a.direction)),
        "related": {"ip": _related(k, a.remote)},
        "host": _host(h),
        "observer": _observer(h),
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
            "provider": _provider(a.remote),
        },
    }
    return _prune(doc)


def format_ecs(a: Alert) -> str:
    """One alert as a compact NDJSON line (no newline)."""
    return json.dumps(ecs_document(a), separators=(",", ":"), ensure_ascii=False)


def _sum(a: int | None, b: int | None) -> int | None:
    return None if a is None and b is None else (a or 0) + (b or 0)


def _server_name(ef: EnrichedFlow) -> str | None:
    """The name the initiator asked the responder by (SNI, HTTP Host, or the DNS name the
    remote address was resolved from, for outbound flows): ECS `destination.domain`."""
    f = ef.flow
    if f.sni or f.http_host:
        return f.sni or f.http_host
    return f.dns_name if f.direction is not Direction.INBOUND else None


def ecs_flow_document(r: FlowReport, host: EcsHost | None = None) -> dict[str, Any]:
    """A flow record (`export.flowlog`) as a nested ECS document (None fields removed)."""
    h = host or this_host()
    ef = r.flow
    f, k = ef.flow, ef.flow.key
    source, destination, swapped = _sides(k, f.direction, ef.remote)
    out_bytes, in_bytes = r.bytes_sent, r.bytes_received
    out_packets, in_packets = r.packets_sent, r.packets_received
    if swapped:  # the remote side initiated: what it sent is what this host received
        out_bytes, in_bytes, out_packets, in_packets = in_bytes, out_bytes, in_packets, out_packets
    if source is not None:
        source.update(bytes=out_bytes, packets=out_packets)
    if destination is not None:
        destination.update(bytes=in_bytes, packets=in_packets, domain=_server_name(ef))
    network = _network(k, network_direction(f.direction, f.forwarded))
    network.update(
        bytes=_sum(r.bytes_sent, r.bytes_received),
        packets=_sum(r.packets_sent, r.packets_received),
        protocol=None if f.label is None else f.label.name,
    )
    c = f.container
    doc = {
        "@timestamp": iso_time(r.end),
        "ecs": {"version": ECS_VERSION},
        "event": {
            "kind": "event",
            "category": ["network"],
            "type": ["connection", "end"] if r.final else ["connection"],
            "reason": r.reason.value,
            "start": iso_time(r.start),
            "end": iso_time(r.end),
            "duration": max(0, round((r.end - r.start) * 1e9)),
            "module": "netwatch",
            "dataset": "netwatch.flow",
        },
        "process": _process(f.process),
        "source": source,
        "destination": destination,
        "network": network,
        "related": {"ip": _related(k, ef.remote)},
        "container": None if c is None else {"name": c.name, "runtime": c.runtime},
        "host": _host(h),
        "observer": _observer(h),
        "netwatch": {
            "flow": {
                "state": f.state,
                "attribution": f.attribution.value,
                "first_seen": None if f.first_seen is None else iso_time(f.first_seen),
                "final": r.final,
                "bytes_sent": f.bytes_sent,
                "bytes_received": f.bytes_received,
                "packets_sent": f.packets_sent,
                "packets_received": f.packets_received,
                "interface": f.interface,
                "forwarded": f.forwarded or None,
                "sni": f.sni,
                "http_host": f.http_host,
                "dns_name": f.dns_name,
            },
            "container": None if c is None else {"netns": c.netns},
            "jurisdiction": list(ef.remote.jurisdiction) if ef.remote else None,
            "label": codec.label_to_dict(f.label),
            "provider": _provider(ef.remote),
        },
    }
    return _prune(doc)


def format_ecs_flow(r: FlowReport) -> str:
    """One flow record as a compact NDJSON line (no newline)."""
    return json.dumps(ecs_flow_document(r), separators=(",", ":"), ensure_ascii=False)
