"""The one serializer: model objects to JSON-safe dicts and back, with a schema version.

Used by `--format jsonl`, the store, the exporters, and (through `netwatch.stream`) the
daemon socket and recordings, so a flow looks the same everywhere. It owns the framing of
records on a byte stream too: `frame` writes one, `FrameReader` reads them back. In the flow
record `src`/`sport` is the initiator: for an inbound flow that is the remote side.
Addresses are strings here and `ipaddress` objects everywhere else. Decoding validates and
raises `CodecError` (one line), never KeyError.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from netwatch.clock import LATEST
from netwatch.errors import DataFileError
from netwatch.model import (
    Action,
    Alert,
    AlertState,
    Attribution,
    Audit,
    CertNames,
    Confidence,
    ConnectionView,
    Container,
    Counters,
    DataSource,
    DefaultRoute,
    Direction,
    Endpoint,
    EnrichedFlow,
    Evidence,
    Fact,
    Finding,
    Flow,
    FlowKey,
    HostFacts,
    Incident,
    IPAddress,
    Label,
    ListHit,
    NamedShare,
    Owner,
    ProcessRef,
    ProviderFacts,
    RemoteInfo,
    Scope,
    Severity,
    Snapshot,
    SocketEntry,
    SoftEtherAccount,
    SoftEtherConfig,
    SourceStatus,
    Transport,
    parse_ip,
)
from netwatch.model.usage import BY as USAGE_BY
from netwatch.model.usage import TIME_BY as USAGE_TIME_BY
from netwatch.model.usage import Away, UsageAnswer, UsageQuery, UsageTotal

SCHEMA = 1

JSONDict = dict[str, Any]
_T = TypeVar("_T")


class CodecError(DataFileError):
    """A record that does not match the schema."""


# ---------------------------------------------------------------- small typed readers


def _get(d: Mapping[str, Any], key: str, kind: type[_T] | tuple[type, ...], *, opt: bool) -> Any:
    if not isinstance(d, Mapping):
        raise CodecError(f"expected an object, got {type(d).__name__}")
    value = d.get(key)
    if value is None:
        if opt:
            return None
        raise CodecError(f"missing field {key!r}")
    if isinstance(value, bool) and kind in (int, float, (int, float)):
        raise CodecError(f"field {key!r} must be a number, got a boolean")
    if not isinstance(value, kind):
        raise CodecError(f"field {key!r} has the wrong type {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise CodecError(f"field {key!r} is not a finite number")
    return value


def _str(d: Mapping[str, Any], key: str) -> str:
    return str(_get(d, key, str, opt=False))


def _ostr(d: Mapping[str, Any], key: str) -> str | None:
    v = _get(d, key, str, opt=True)
    return None if v is None else str(v)


def _int(d: Mapping[str, Any], key: str) -> int:
    return int(_get(d, key, int, opt=False))


def _oint(d: Mapping[str, Any], key: str) -> int | None:
    v = _get(d, key, int, opt=True)
    return None if v is None else int(v)


def _num(d: Mapping[str, Any], key: str) -> float:
    return float(_get(d, key, (int, float), opt=False))


def _onum(d: Mapping[str, Any], key: str) -> float | None:
    v = _get(d, key, (int, float), opt=True)
    return None if v is None else float(v)


def _time(d: Mapping[str, Any], key: str) -> float:
    """A timestamp: also bounded (from 1970 to 2100), so no date formatter meets 1e300."""
    value = _num(d, key)
    if not 0.0 <= value <= LATEST:
        raise CodecError(f"field {key!r} is not a time between 1970 and 2100: {value!r}")
    return value


def _otime(d: Mapping[str, Any], key: str) -> float | None:
    return None if _get(d, key, (int, float), opt=True) is None else _time(d, key)


def _list(d: Mapping[str, Any], key: str) -> Sequence[Any]:
    v = _get(d, key, list, opt=True)
    return () if v is None else v


def _strs(d: Mapping[str, Any], key: str) -> tuple[str, ...]:
    items = _list(d, key)
    if not all(isinstance(a, str) for a in items):
        raise CodecError(f"field {key!r} must be a list of strings")
    return tuple(items)


def _enum(
    d: Mapping[str, Any], key: str, kind: Callable[[str], _T], default: _T | None = None
) -> _T:
    raw = _get(d, key, str, opt=default is not None)
    if raw is None:
        assert default is not None  # noqa: S101  # narrowed by opt above
        return default
    try:
        return kind(raw)
    except ValueError:
        raise CodecError(f"field {key!r} has an unknown value {raw!r}") from None


def _ip(d: Mapping[str, Any], key: str) -> Any:
    raw = _str(d, key)
    try:
        return parse_ip(raw)
    except ValueError:
        raise CodecError(f"field {key!r} is not an IP address: {raw!r}") from None


def _port(d: Mapping[str, Any], key: str) -> int:
    port = _oint(d, key)
    if port is None:
        return 0
    if not 0 <= port <= 65535:
        raise CodecError(f"field {key!r} is not a port: {port}")
    return port


def get_int(d: Mapping[str, Any], key: str) -> int:
    """A whole number that must be there (`CodecError` if missing or not whole)."""
    return _int(d, key)


def get_optional_int(d: Mapping[str, Any], key: str) -> int | None:
    """A whole number or null."""
    return _oint(d, key)


def get_object(d: Mapping[str, Any], key: str) -> JSONDict | None:
    """A JSON object or null."""
    return _get(d, key, dict, opt=True)  # type: ignore[no-any-return]  # checked to be a dict


def get_time(d: Mapping[str, Any], key: str) -> float:
    """A timestamp from 1970 to 2100 (`CodecError` otherwise, also when missing)."""
    return _time(d, key)


def get_list(d: Mapping[str, Any], key: str) -> Sequence[Any]:
    """A JSON list; missing or null is empty."""
    return _list(d, key)


def tick_from_dict(
    d: Mapping[str, Any], status: SourceStatus, alerts: tuple[Alert, ...]
) -> Snapshot:
    """A snapshot without flows from a record's `seq`, `taken_at`, `interval`, `counters`."""
    return Snapshot(
        seq=_int(d, "seq"),
        taken_at=_time(d, "taken_at"),
        interval=_num(d, "interval"),
        alerts=alerts,
        status=status,
        counters=counters_from_dict(get_object(d, "counters") or {}),
    )


# ---------------------------------------------------------------- parts


def evidence_to_list(items: Sequence[Evidence]) -> list[JSONDict]:
    """Encode evidence items as `[{"name", "value"}]`."""
    return [{"name": e.name, "value": e.value} for e in items]


def evidence_from_list(items: Sequence[Any]) -> tuple[Evidence, ...]:
    """Decode evidence items."""
    return tuple(Evidence(_str(e, "name"), _str(e, "value")) for e in items)


def process_to_dict(p: ProcessRef | None) -> JSONDict | None:
    """Encode a process as the flow contract's `process` object."""
    if p is None:
        return None
    return {
        "pid": p.pid,
        "name": p.name,
        "exe": p.exe,
        "cmdline": list(p.cmdline),
        "user": p.user,
        "ppid": p.ppid,
        "create_time": p.create_time,
    }


def process_from_dict(d: Any) -> ProcessRef | None:
    """Decode a `process` object (None stays None)."""
    if d is None:
        return None
    cmdline = _strs(d, "cmdline")
    return ProcessRef(
        pid=_int(d, "pid"),
        create_time=_time(d, "create_time"),
        name=_str(d, "name"),
        exe=_ostr(d, "exe"),
        cmdline=cmdline,
        user=_ostr(d, "user"),
        ppid=_oint(d, "ppid"),
    )


def remote_to_dict(r: RemoteInfo | None) -> JSONDict | None:
    """Encode what is known about a remote address (also the `lookup` record's body)."""
    if r is None:
        return None
    owner = None
    if r.owner is not None:
        o = r.owner
        owner = {
            "status": o.status,
            "reason": o.reason,
            "name": o.name,
            "handle": o.handle,
            "cidr": o.cidr,
            "country": o.country,
            "abuse_emails": list(o.abuse_emails),
        }
    return {
        "ip": str(r.ip),
        "scope": r.scope.value,
        "country": r.country,
        "asn": r.asn,
        "as_org": r.as_org,
        "jurisdiction": list(r.jurisdiction),
        "owner": owner,
        "lists": [
            {
                "list": h.list,
                "detail": h.detail,
                "first_seen": h.first_seen,
                "last_seen": h.last_seen,
            }
            for h in r.lists
        ],
        "sources": [{"file": s.file, "type": s.type, "built": s.built} for s in r.sources],
        **({} if r.provider is None else {"provider": provider_to_dict(r.provider)}),
    }


def provider_to_dict(p: ProviderFacts) -> JSONDict:
    """Encode a provider's facts (left out of a remote record when there is none)."""
    return {
        "id": p.id,
        "name": p.name,
        "kind": p.kind,
        "operator": p.operator,
        "country": p.country,
        "country_note": p.country_note,
        "groups": list(p.groups),
        "logging": p.logging,
        "source": p.source,
        "checked": p.checked,
        "facts": [{"text": f.text, "url": f.url, "checked": f.checked} for f in p.facts],
        "audits": [
            {
                "auditor": a.auditor,
                "year": a.year,
                "scope": a.scope,
                "url": a.url,
                "checked": a.checked,
            }
            for a in p.audits
        ],  # fmt: skip
        "incidents": [
            {"year": i.year, "what": i.what, "url": i.url, "checked": i.checked}
            for i in p.incidents
        ],
    }


def provider_from_dict(d: Any) -> ProviderFacts | None:
    """Decode a provider object (None stays None)."""
    if d is None:
        return None
    return ProviderFacts(
        id=_str(d, "id"),
        name=_str(d, "name"),
        kind=_str(d, "kind"),
        operator=_str(d, "operator"),
        country=_ostr(d, "country"),
        groups=_strs(d, "groups"),
        logging=_ostr(d, "logging"),
        source=_str(d, "source"),
        checked=_str(d, "checked"),
        facts=tuple(
            Fact(_str(f, "text"), _str(f, "url"), _str(f, "checked")) for f in _list(d, "facts")
        ),
        audits=tuple(
            Audit(
                _str(a, "auditor"),
                _int(a, "year"),
                _str(a, "scope"),
                _str(a, "url"),
                _str(a, "checked"),
            )
            for a in _list(d, "audits")
        ),  # fmt: skip
        incidents=tuple(
            Incident(_int(i, "year"), _str(i, "what"), _str(i, "url"), _str(i, "checked"))
            for i in _list(d, "incidents")
        ),
        country_note=_ostr(d, "country_note"),
    )


def remote_from_dict(d: Any) -> RemoteInfo | None:
    """Decode a remote object (None stays None)."""
    if d is None:
        return None
    o = _get(d, "owner", dict, opt=True)
    owner = None
    if o is not None:
        owner = Owner(
            status=_str(o, "status"),
            reason=_ostr(o, "reason"),
            name=_ostr(o, "name"),
            handle=_ostr(o, "handle"),
            cidr=_ostr(o, "cidr"),
            country=_ostr(o, "country"),
            abuse_emails=tuple(str(x) for x in _list(o, "abuse_emails")),
        )
    return RemoteInfo(
        ip=_ip(d, "ip"),
        scope=_enum(d, "scope", Scope),
        country=_ostr(d, "country"),
        asn=_oint(d, "asn"),
        as_org=_ostr(d, "as_org"),
        jurisdiction=tuple(str(x) for x in _list(d, "jurisdiction")),
        owner=owner,
        lists=tuple(
            ListHit(
                _str(h, "list"), _ostr(h, "detail"), _otime(h, "first_seen"), _otime(h, "last_seen")
            )
            for h in _list(d, "lists")
        ),
        sources=tuple(
            DataSource(_str(s, "file"), _str(s, "type"), _otime(s, "built"))
            for s in _list(d, "sources")
        ),
        provider=provider_from_dict(d.get("provider")),
    )


def key_to_dict(k: FlowKey | None) -> JSONDict | None:
    """Encode a flow key as local/remote endpoints (used inside alerts)."""
    if k is None:
        return None
    return {
        "transport": k.transport.value,
        "local_ip": str(k.local.ip),
        "local_port": k.local.port,
        "remote_ip": None if k.remote is None else str(k.remote.ip),
        "remote_port": None if k.remote is None else k.remote.port,
    }


_KEY_FIELDS = ("transport", "local_ip", "local_port", "remote_ip", "remote_port")


def key_from_dict(d: Any) -> FlowKey | None:
    """Decode a flow key (None stays None)."""
    if d is None:
        return None
    remote = None
    if _ostr(d, "remote_ip") is not None:
        remote = Endpoint(_ip(d, "remote_ip"), _port(d, "remote_port"))
    return FlowKey(
        _enum(d, "transport", Transport),
        Endpoint(_ip(d, "local_ip"), _port(d, "local_port")),
        remote,
    )


# ---------------------------------------------------------------- records


def flow_to_dict(ef: EnrichedFlow) -> JSONDict:
    """Encode a flow as the flow record of the JSONL contract (`type: flow`)."""
    f = ef.flow
    local, remote = f.key.local, f.key.remote
    src: Endpoint = local
    dst: Endpoint | None = remote
    if f.direction is Direction.INBOUND and remote is not None:
        src, dst = remote, local
    label = f.label
    return {
        "schema": SCHEMA,
        "type": "flow",
        "transport": f.key.transport.value,
        "src": str(src.ip),
        "sport": src.port,
        "dst": None if dst is None else str(dst.ip),
        "dport": None if dst is None else dst.port,
        "direction": f.direction.value,
        "state": f.state,
        "process": process_to_dict(f.process),
        "attribution": f.attribution.value,
        "bytes_sent": f.bytes_sent,
        "bytes_received": f.bytes_received,
        "packets_sent": f.packets_sent,
        "packets_received": f.packets_received,
        "first_seen": f.first_seen,
        "last_seen": f.last_seen,
        "app": None if label is None else label.name,
        "category": None if label is None else label.category,
        "vpn": False if label is None else label.vpn,
        "confidence": None if label is None else label.confidence.value,
        "evidence": [] if label is None else evidence_to_list(label.evidence),
        "dns_name": f.dns_name,
        "sni": f.sni,
        "http_host": f.http_host,
        "tls_cert": cert_to_dict(f.tls_cert),
        "http_request": f.http_request,
        "body_prefix": None if f.body_prefix is None else f.body_prefix.decode("latin-1"),
        "interface": f.interface,
        "egress_by": f.egress_by,
        "forwarded": f.forwarded,
        "container": container_to_dict(f.container),
        "remote": remote_to_dict(ef.remote),
    }


def cert_to_dict(c: CertNames | None) -> JSONDict | None:
    """Encode a server certificate's names (None when none was read)."""
    if c is None:
        return None
    return {"subject": c.subject, "issuer": c.issuer, "san": list(c.san)}


def cert_from_dict(d: Any) -> CertNames | None:
    """Decode a `tls_cert` object; records written before it existed have none."""
    if d is None:
        return None
    return CertNames(subject=_str(d, "subject"), issuer=_str(d, "issuer"), san=_strs(d, "san"))


def container_to_dict(c: Container | None) -> JSONDict | None:
    """Encode a flow's network namespace (None: the host's own)."""
    if c is None:
        return None
    return {"netns": c.netns, "name": c.name, "runtime": c.runtime}


def container_from_dict(d: Any) -> Container | None:
    """Decode a `container` object; records written before it existed have none."""
    if d is None:
        return None
    if not isinstance(d, Mapping):
        raise CodecError("container: expected an object")
    netns = _oint(d, "netns")
    if netns is None:
        raise CodecError("container: netns missing")
    return Container(netns=netns, name=_ostr(d, "name"), runtime=_ostr(d, "runtime"))


def _latin1(d: Mapping[str, Any], key: str) -> bytes | None:
    """Bytes written as a Latin-1 string (one character per byte, so any bytes round-trip)."""
    text = _ostr(d, key)
    if text is None:
        return None
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        raise CodecError(f"field {key!r} has a character above U+00FF") from None


def flow_from_dict(d: Any) -> EnrichedFlow:
    """Decode a flow record back into an `EnrichedFlow`."""
    return EnrichedFlow(
        flow_of(d, process_from_dict(d.get("process"))),
        remote_from_dict(d.get("remote")),
    )


def flow_of(
    d: Any,
    process: ProcessRef | None,
    *,
    serial: int = 0,
    rev_facts: int = 0,
    rev_traffic: int = 0,
) -> Flow:
    """The `Flow` of a flow record's fields, its process given (the delta protocol sends
    processes once and refers to them, `netwatch.stream`), and its change-contract numbers."""
    direction = _enum(d, "direction", Direction)
    src = Endpoint(_ip(d, "src"), _port(d, "sport"))
    dst = None if _ostr(d, "dst") is None else Endpoint(_ip(d, "dst"), _port(d, "dport"))
    local: Endpoint = src
    remote: Endpoint | None = dst
    if direction is Direction.INBOUND and dst is not None:
        local, remote = dst, src
    app = _ostr(d, "app")
    label = None if app is None else _label_named(d, app)
    return Flow(
        key=FlowKey(_enum(d, "transport", Transport), local, remote),
        direction=direction,
        state=_ostr(d, "state"),
        process=process,
        attribution=_enum(d, "attribution", Attribution, Attribution.UNKNOWN),
        first_seen=_otime(d, "first_seen"),
        last_seen=_otime(d, "last_seen"),
        bytes_sent=_oint(d, "bytes_sent"),
        bytes_received=_oint(d, "bytes_received"),
        packets_sent=_oint(d, "packets_sent"),
        packets_received=_oint(d, "packets_received"),
        dns_name=_ostr(d, "dns_name"),
        sni=_ostr(d, "sni"),
        http_host=_ostr(d, "http_host"),
        label=label,
        tls_cert=cert_from_dict(d.get("tls_cert")),
        http_request=_ostr(d, "http_request"),
        body_prefix=_latin1(d, "body_prefix"),
        interface=_ostr(d, "interface"),
        egress_by=_ostr(d, "egress_by"),
        forwarded=d.get("forwarded") is True,
        container=container_from_dict(d.get("container")),
        serial=serial,
        rev_facts=rev_facts,
        rev_traffic=rev_traffic,
    )


TRAFFIC_FIELDS = ("bytes_sent", "bytes_received", "packets_sent", "packets_received", "last_seen")
"""What `Flow.rev_traffic` covers: a flow whose other revisions stayed may send only these."""


def traffic_to_dict(f: Flow) -> JSONDict:
    """A flow's traffic fields (`TRAFFIC_FIELDS`), as in its flow record."""
    return {
        "bytes_sent": f.bytes_sent,
        "bytes_received": f.bytes_received,
        "packets_sent": f.packets_sent,
        "packets_received": f.packets_received,
        "last_seen": f.last_seen,
    }


def traffic_from_dict(d: Any) -> dict[str, Any]:
    """Decode a traffic object into `Flow` field values (for `dataclasses.replace`)."""
    return {
        "bytes_sent": _oint(d, "bytes_sent"),
        "bytes_received": _oint(d, "bytes_received"),
        "packets_sent": _oint(d, "packets_sent"),
        "packets_received": _oint(d, "packets_received"),
        "last_seen": _otime(d, "last_seen"),
    }


def alert_to_dict(a: Alert) -> JSONDict:
    """Encode an alert record (`type: alert`)."""
    return {
        "schema": SCHEMA,
        "type": "alert",
        "id": a.id,
        "rule": a.rule_id,
        "title": a.title,
        "severity": a.severity.value,
        "identifier": a.identifier,
        "message": a.message,
        "first_seen": a.first_seen,
        "last_seen": a.last_seen,
        "count": a.count,
        "state": a.state.value,
        "flow": key_to_dict(a.flow_key),
        "process": process_to_dict(a.process),
        "remote": remote_to_dict(a.remote),
        "evidence": evidence_to_list(a.evidence),
        "tags": list(a.tags),
        "action": a.action.value,
        "label": label_to_dict(a.label),
        "direction": None if a.direction is None else a.direction.value,
    }


LEGACY_LOG_TAG = "log"
"""How records written before the `action` field marked a logged alert: a `log` tag."""


def _action_and_tags(d: Mapping[str, Any]) -> tuple[Action, tuple[str, ...]]:
    """The alert's policy action and its rule tags, reading the older form too.

    Records from before the `action` field carry the action as an extra `log` tag; they
    decode as logged, without that tag, so old stores and exports read as new ones do.
    """
    tags = tuple(str(t) for t in _list(d, "tags"))
    if d.get("action") is not None:
        return _enum(d, "action", Action), tags
    if LEGACY_LOG_TAG in tags:
        return Action.LOG, tuple(t for t in tags if t != LEGACY_LOG_TAG)
    return Action.ALERT, tags


def label_to_dict(label: Label | None) -> JSONDict | None:
    """Encode an alert's flow label: name, category, vpn, confidence and its evidence."""
    if label is None:
        return None
    return {
        "name": label.name,
        "category": label.category,
        "vpn": label.vpn,
        "confidence": label.confidence.value,
        "evidence": evidence_to_list(label.evidence),
    }


def label_from_dict(d: Any) -> Label | None:
    """Decode an alert's `label`; records written before it existed have none."""
    return None if d is None else _label_named(d, _str(d, "name"))


def _label_named(d: Any, name: str) -> Label:
    """A label from the `category`, `vpn`, `confidence` and `evidence` keys of `d`, which
    flow records (name in `app`) and alert records (name in `label.name`) share."""
    category = _ostr(d, "category")
    return Label(
        name=name,
        category="unknown" if category is None else category,
        vpn=bool(_get(d, "vpn", bool, opt=True)),
        confidence=_enum(d, "confidence", Confidence, Confidence.MEDIUM),
        evidence=evidence_from_list(_list(d, "evidence")),
    )


def alert_from_dict(d: Any) -> Alert:
    """Decode an alert record."""
    action, tags = _action_and_tags(d)
    return Alert(
        id=_str(d, "id"),
        rule_id=_str(d, "rule"),
        title=_str(d, "title"),
        severity=_enum(d, "severity", Severity),
        identifier=_str(d, "identifier"),
        message=_str(d, "message"),
        first_seen=_time(d, "first_seen"),
        last_seen=_time(d, "last_seen"),
        count=_int(d, "count"),
        state=_enum(d, "state", AlertState, AlertState.OPEN),
        flow_key=key_from_dict(d.get("flow")),
        process=process_from_dict(d.get("process")),
        remote=remote_from_dict(d.get("remote")),
        evidence=evidence_from_list(_list(d, "evidence")),
        tags=tags,
        action=action,
        label=label_from_dict(d.get("label")),
        direction=None if d.get("direction") is None else _enum(d, "direction", Direction),
    )


def status_to_dict(st: SourceStatus) -> JSONDict:
    """Encode what the sources could see (a snapshot's `status`)."""
    return {
        "mode": st.mode,
        "privileged": st.privileged,
        "capture": st.capture,
        "capture_reason": st.capture_reason,
        "missing": list(st.missing),
        "geoip": st.geoip,
        "skipped": list(st.skipped),
        "starts": st.starts,
    }


def status_from_dict(st: Any) -> SourceStatus:
    """Decode a `status` object (missing fields take their defaults)."""
    return SourceStatus(
        mode=_ostr(st, "mode") or "local",
        privileged=bool(_get(st, "privileged", bool, opt=True)),
        capture=bool(_get(st, "capture", bool, opt=True)),
        capture_reason=_ostr(st, "capture_reason"),
        missing=tuple(str(x) for x in _list(st, "missing")),
        geoip=_ostr(st, "geoip"),
        skipped=tuple(str(x) for x in _get(st, "skipped", list, opt=True) or ()),
        starts=_ostr(st, "starts"),
    )


def counters_to_dict(c: Counters) -> JSONDict:
    """Encode a tick's sizes and losses (a snapshot's `counters`)."""
    return {
        "sockets": c.sockets,
        "flows": c.flows,
        "packets": c.packets,
        "capture_drops": c.capture_drops,
        "queue_drops": c.queue_drops,
        "sample_ms": c.sample_ms,
        "starts_named": c.starts_named,
        "starts_missed": c.starts_missed,
        "starts_missed_budget": c.starts_missed_budget,
        "starts_missed_gone": c.starts_missed_gone,
        "starts_missed_queue": c.starts_missed_queue,
        "share": share_to_list(c.share),
    }


_SHARE_FIELDS = ("bytes_known", "bytes_guessed", "bytes_unknown",
                 "flows_known", "flows_guessed", "flows_unknown")  # fmt: skip


def share_to_list(s: NamedShare) -> list[int]:
    """Encode a `NamedShare` as its six counts, in field order."""
    return [getattr(s, name) for name in _SHARE_FIELDS]


def share_from_list(items: Any) -> NamedShare:
    """Decode `share_to_list` (anything else, as from an older writer, is an empty share)."""
    if not isinstance(items, list) or len(items) != len(_SHARE_FIELDS):
        return NamedShare()
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in items):
        raise CodecError("share: six counts expected")
    return NamedShare(*items)


def counters_from_dict(c: Any) -> Counters:
    """Decode a `counters` object (missing fields are zero)."""
    return Counters(
        sockets=_oint(c, "sockets") or 0,
        flows=_oint(c, "flows") or 0,
        packets=_oint(c, "packets") or 0,
        capture_drops=_oint(c, "capture_drops") or 0,
        queue_drops=_oint(c, "queue_drops") or 0,
        sample_ms=_onum(c, "sample_ms") or 0.0,
        starts_named=_oint(c, "starts_named") or 0,
        starts_missed=_oint(c, "starts_missed") or 0,
        starts_missed_budget=_oint(c, "starts_missed_budget") or 0,
        starts_missed_gone=_oint(c, "starts_missed_gone") or 0,
        starts_missed_queue=_oint(c, "starts_missed_queue") or 0,
        share=share_from_list(c.get("share") if isinstance(c, Mapping) else None),
    )


def snapshot_to_dict(s: Snapshot) -> JSONDict:
    """Encode a whole tick as one flat record (`type: snapshot`, schema 1).

    The format of recordings and of the daemon socket before the delta protocol
    (`netwatch.stream`, schema 2); kept so that old recordings still read, and for tests that
    look at a tick as one JSON object.
    """
    return {
        "schema": SCHEMA,
        "type": "snapshot",
        "seq": s.seq,
        "taken_at": s.taken_at,
        "interval": s.interval,
        "status": status_to_dict(s.status),
        "counters": counters_to_dict(s.counters),
        "flows": [flow_to_dict(f) for f in s.flows],
        "alerts": [alert_to_dict(a) for a in s.alerts],
    }


def snapshot_from_dict(d: Any) -> Snapshot:
    """Decode a snapshot record."""
    return Snapshot(
        seq=_int(d, "seq"),
        taken_at=_time(d, "taken_at"),
        interval=_num(d, "interval"),
        flows=tuple(flow_from_dict(f) for f in _list(d, "flows")),
        alerts=tuple(alert_from_dict(a) for a in _list(d, "alerts")),
        status=status_from_dict(_get(d, "status", dict, opt=True) or {}),
        counters=counters_from_dict(_get(d, "counters", dict, opt=True) or {}),
    )


# ---------------------------------------------------------------- check findings


def finding_to_dict(f: Finding) -> JSONDict:
    """A `netwatch check` finding as one JSONL record (write-only: nothing reads them back)."""
    return {
        "schema": SCHEMA,
        "type": "finding",
        "id": f.id,
        "severity": f.severity.value,
        "title": f.title,
        "evidence": list(f.evidence),
        "advice": f.advice,
    }


# ---------------------------------------------------------------- any record

Record = EnrichedFlow | Alert | Snapshot


def encode(obj: Record) -> JSONDict:
    """Encode any record type by its class."""
    if isinstance(obj, EnrichedFlow):
        return flow_to_dict(obj)
    if isinstance(obj, Alert):
        return alert_to_dict(obj)
    return snapshot_to_dict(obj)


def decode(d: Any) -> Record:
    """Decode any record by its `type`, checking the schema version first."""
    if not isinstance(d, dict):
        raise CodecError(f"expected a JSON object, got {type(d).__name__}")
    schema = d.get("schema")
    if schema != SCHEMA:
        raise CodecError(f"unsupported schema version {schema!r} (this netwatch reads {SCHEMA})")
    kind = d.get("type")
    if kind == "flow":
        return flow_from_dict(d)
    if kind == "alert":
        return alert_from_dict(d)
    if kind == "snapshot":
        return snapshot_from_dict(d)
    raise CodecError(f"unknown record type {kind!r}")


def dumps(obj: Record) -> str:
    """Encode a record as one compact JSON line (no newline)."""
    return _text(encode(obj))


def _text(record: JSONDict) -> str:
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False)


def loads(line: str | bytes) -> Record:
    """Decode one JSON line; any malformed input raises `CodecError`."""
    return decode(parse(line))


def parse(line: str | bytes | bytearray) -> Any:
    """The JSON value of one line; malformed input raises `CodecError`."""
    try:
        return json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CodecError(f"not a JSON record: {exc}") from None
    except RecursionError:
        raise CodecError("not a JSON record: nested too deeply") from None


# ================================================================ usage history
# The history request's typed parts (`netwatch.history_wire` builds the records around them):
# the query a client asks, the totals and "while you were away" the daemon answers.

_QUERY_TEXT = 4096
"""Longest text a query's filter may hold (a process path; longer is no real filter)."""


def usage_query_to_dict(q: UsageQuery) -> JSONDict:
    """A usage query as a flat object (None fields left out)."""
    out: JSONDict = {"by": q.by}
    for name in ("since", "until", "step", "process", "country", "remote", "top"):
        value = getattr(q, name)
        if value is not None:
            out[name] = value
    return out


def usage_query_from_dict(d: Any) -> UsageQuery:
    """Decode and check a usage query: a known grouping, times from 1970 to 2100, a positive
    step and top, bounded filter text; anything else is a `CodecError`."""
    by = _str(d, "by")
    if by not in USAGE_BY and by not in USAGE_TIME_BY:
        raise CodecError(f"field 'by' is not a grouping: {by[:40]!r}")
    texts = {}
    for name in ("process", "country", "remote"):
        value = _ostr(d, name)
        if value is not None and len(value) > _QUERY_TEXT:
            raise CodecError(f"field {name!r} is longer than {_QUERY_TEXT} characters")
        texts[name] = value
    step, top = _oint(d, "step"), _oint(d, "top")
    if step is not None and not 60 <= step <= 366 * 86400:
        raise CodecError("field 'step' must be from 60 seconds to a year")
    if top is not None and top < 1:
        raise CodecError("field 'top' must be positive")
    return UsageQuery(
        since=_otime(d, "since"),
        until=_otime(d, "until"),
        by=by,
        step=step,
        process=texts["process"],
        country=texts["country"],
        remote=texts["remote"],
        top=top,
    )


def usage_total_to_list(t: UsageTotal) -> list[Any]:
    """One total as `[key, bytes_out, bytes_in, connections, first, last, at]`."""
    return [list(t.key), t.bytes_out, t.bytes_in, t.connections, t.first, t.last, t.at]


def usage_total_from_list(items: Any) -> UsageTotal:
    """Decode one total; counts are whole non-negative numbers, key values text or numbers."""
    if not isinstance(items, list) or len(items) != 7 or not isinstance(items[0], list):
        raise CodecError("a usage total must be a list of 7 with a key list first")
    key = items[0]
    if len(key) > 16 or not all(
        v is None or isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool))
        for v in key
    ):
        raise CodecError("a usage total's key must hold text, whole numbers or null")
    nums = items[1:6]
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in nums):
        raise CodecError("a usage total's counts must be whole numbers, not negative")
    at = items[6]
    if at is not None and (not isinstance(at, int) or isinstance(at, bool)):
        raise CodecError("a usage total's step start must be a whole number or null")
    return UsageTotal(tuple(key), nums[0], nums[1], nums[2], nums[3], nums[4], at)


def usage_answer_to_dict(a: UsageAnswer) -> JSONDict:
    """A query's answer: its totals, the spans it read, whether an end counted whole."""
    return {
        "totals": [usage_total_to_list(t) for t in a.totals],
        "spans": list(a.spans),
        "coarse": a.coarse,
        "truncated": a.truncated,
    }


def usage_answer_from_dict(d: Any) -> UsageAnswer:
    """Decode a query's answer (`CodecError` on anything malformed)."""
    spans = _list(d, "spans")
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in spans):
        raise CodecError("field 'spans' must be a list of whole numbers")
    coarse = _get(d, "coarse", bool, opt=True)
    cut = _get(d, "truncated", bool, opt=True)
    return UsageAnswer(
        [usage_total_from_list(t) for t in _list(d, "totals")],
        list(spans),
        bool(coarse),
        bool(cut),
    )


def away_to_dict(a: Away) -> JSONDict:
    """ "While you were away": new programs and countries with when, and the alerts."""
    return {
        "since": a.since,
        "programs": [[p, t] for p, t in a.programs],
        "countries": [[c, t] for c, t in a.countries],
        "alerts": [alert_to_dict(x) for x in a.alerts],
    }


def _named_times(d: Any, key: str) -> tuple[tuple[str, float], ...]:
    out = []
    for item in _list(d, key):
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)):
            raise CodecError(f"field {key!r} must hold [name, time] pairs")
        out.append((item[0], _time({"t": item[1]}, "t")))
    return tuple(out)


def away_from_dict(d: Any) -> Away:
    """Decode "while you were away" (`CodecError` on anything malformed)."""
    return Away(
        since=_time(d, "since"),
        programs=_named_times(d, "programs"),
        countries=_named_times(d, "countries"),
        alerts=tuple(alert_from_dict(x) for x in _list(d, "alerts")),
    )


# ================================================================ privilege split
# Records the privileged collector hands the unprivileged analyzer over their socketpair
# (`sources/collector.py` writes them, `sources/remote.py` reads them). Kept in one block at
# the end of the file so the delta protocol's framing can take it over in one place.


def socket_entry_to_list(
    e: SocketEntry, proc: int | None, keys: dict[FlowKey, JSONDict] | None = None
) -> list[Any]:
    """A socket entry as a compact list; its process is `proc`, a handle into the process
    table sent beside it (each process is sent once, not once per socket). `keys` keeps
    encoded keys, so a socket re-read tick after tick has its key encoded once. Optional
    tail fields, sent only when needed: a packet socket's bound interface (eleventh) and a
    container's socket's container (twelfth; the eleventh is then null when unbound)."""
    key = None if keys is None else keys.get(e.key)
    if key is None:
        key = key_to_dict(e.key)
        if keys is not None and key is not None:
            keys[e.key] = key
    out = [
        key,
        e.state,
        e.direction.value,
        proc,
        e.inode,
        e.uid,
        e.bytes_sent,
        e.bytes_received,
        e.segs_out,
        e.segs_in,
    ]
    if e.container is not None:
        out += [e.interface, container_to_dict(e.container)]
    elif e.interface is not None:
        out.append(e.interface)
    return out


def _oint_at(items: Sequence[Any], i: int) -> int | None:
    value = items[i]
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise CodecError(f"socket entry field {i}: expected a whole number, got {value!r}")


KeyCache = dict[tuple[Any, ...], FlowKey]
"""Decoded flow keys by their encoded fields: a re-read socket's key is the same text tick
after tick, and parsing its addresses is most of decoding an entry."""


def socket_entry_from_list(
    items: Any, procs: Mapping[int, ProcessRef], keys: KeyCache | None = None, stamp: int = 0
) -> SocketEntry:
    """Decode `socket_entry_to_list`; the process handle is looked up in `procs`, the key
    in `keys` first (and kept there) when given; the entry gets `stamp`."""
    if not isinstance(items, list) or len(items) not in (10, 11, 12):
        raise CodecError("a socket entry is a list of 10 to 12 fields")
    interface = items[10] if len(items) >= 11 else None
    if interface is not None and not isinstance(interface, str):
        raise CodecError(f"socket entry interface: expected text, got {interface!r}")
    raw = items[0]
    memo: tuple[Any, ...] | None = None
    key = None
    if keys is not None and isinstance(raw, dict) and len(raw) == 5:
        memo = tuple(map(raw.get, _KEY_FIELDS))
        if all(v is None or isinstance(v, str | int) for v in memo):
            key = keys.get(memo)
        else:
            memo = None
    if key is None:
        key = key_from_dict(raw)
        if key is None:
            raise CodecError("a socket entry needs a key")
        if memo is not None and keys is not None:
            keys[memo] = key
    state = items[1]
    if state is not None and not isinstance(state, str):
        raise CodecError(f"socket entry state: expected text, got {state!r}")
    try:
        direction = Direction(items[2])
    except ValueError:
        raise CodecError(f"socket entry direction: {items[2]!r}") from None
    handle = _oint_at(items, 3)
    if handle is not None and handle not in procs:
        raise CodecError(f"socket entry names process {handle}, which was never sent")
    return SocketEntry(
        key=key,
        state=state,
        direction=direction,
        process=None if handle is None else procs[handle],
        inode=_oint_at(items, 4),
        uid=_oint_at(items, 5),
        bytes_sent=_oint_at(items, 6),
        bytes_received=_oint_at(items, 7),
        segs_out=_oint_at(items, 8),
        segs_in=_oint_at(items, 9),
        interface=interface,
        container=container_from_dict(items[11]) if len(items) == 12 else None,
        stamp=stamp,
    )


def socket_counters_to_list(handle: Any, e: SocketEntry) -> list[Any]:
    """A re-read socket whose facts (key, state, direction, owner, inode, uid, interface,
    container) are those sent before: its handle and the four counters only
    (`socket_entry_with_counters`)."""
    return [handle, e.bytes_sent, e.bytes_received, e.segs_out, e.segs_in]


def socket_entry_with_counters(
    items: Any, entries: Mapping[Any, SocketEntry], stamp: int = 0
) -> tuple[Any, SocketEntry]:
    """Decode `socket_counters_to_list` against the entries held: (handle, the held entry
    with these counters and `stamp`)."""
    if not isinstance(items, list) or len(items) != 5:
        raise CodecError("a socket's counters are a list of 5 fields")
    handle = items[0]
    if not isinstance(handle, int | str) or handle not in entries:
        raise CodecError(f"counters for socket {handle!r}, which was never sent")
    held = entries[handle]
    return handle, SocketEntry(
        key=held.key,
        state=held.state,
        direction=held.direction,
        process=held.process,
        inode=held.inode,
        uid=held.uid,
        bytes_sent=_oint_at(items, 1),
        bytes_received=_oint_at(items, 2),
        segs_out=_oint_at(items, 3),
        segs_in=_oint_at(items, 4),
        interface=held.interface,
        container=held.container,
        stamp=stamp,
    )


def nat_to_list(nat: Sequence[tuple[ConnectionView, ConnectionView]]) -> list[Any]:
    """A socket table's translated connections (`SocketTable.nat`) as lists."""
    return [[_view_to_list(a), _view_to_list(b)] for a, b in nat]


def _view_to_list(view: ConnectionView) -> list[Any]:
    t, ini, resp = view
    return [t.value, str(ini.ip), ini.port, str(resp.ip), resp.port]


def nat_from_list(items: Any) -> tuple[tuple[ConnectionView, ConnectionView], ...]:
    """Decode `nat_to_list`."""
    if not isinstance(items, list):
        raise CodecError("nat: expected a list")
    out = []
    for pair in items:
        if not isinstance(pair, list) or len(pair) != 2:
            raise CodecError("nat: each entry is a pair of views")
        out.append((_view_from_list(pair[0]), _view_from_list(pair[1])))
    return tuple(out)


def _view_from_list(items: Any) -> ConnectionView:
    if not isinstance(items, list) or len(items) != 5:
        raise CodecError("nat: a view is a list of 5 fields")
    t, ip1, port1, ip2, port2 = items
    if not all(isinstance(p, int) and not isinstance(p, bool) for p in (port1, port2)):
        raise CodecError("nat: ports are whole numbers")
    try:
        return (Transport(t), Endpoint(parse_ip(ip1), port1), Endpoint(parse_ip(ip2), port2))
    except (ValueError, TypeError):
        raise CodecError(f"nat: bad view {items!r}") from None


def homes_to_list(homes: Sequence[tuple[int, Sequence[IPAddress]]]) -> list[Any]:
    """Other namespaces' own addresses (`SocketTable.homes`) as lists."""
    return [[netns, [str(ip) for ip in addresses]] for netns, addresses in homes]


def homes_from_list(items: Any) -> tuple[tuple[int, tuple[IPAddress, ...]], ...]:
    """Decode `homes_to_list`."""
    if not isinstance(items, list):
        raise CodecError("homes: expected a list")
    out = []
    for pair in items:
        if not isinstance(pair, list) or len(pair) != 2:
            raise CodecError("homes: each entry is [netns, addresses]")
        netns, addresses = pair
        if not isinstance(netns, int) or isinstance(netns, bool) or not isinstance(addresses, list):
            raise CodecError("homes: a netns inode and a list of addresses")
        if not all(isinstance(a, str) for a in addresses):
            raise CodecError("homes: addresses are text")
        try:
            out.append((netns, tuple(parse_ip(a) for a in addresses)))
        except (ValueError, TypeError):
            raise CodecError(f"homes: bad address in {addresses!r}") from None
    return tuple(out)


def host_facts_to_dict(h: HostFacts) -> JSONDict:
    """Host facts (the SoftEther configs read on this machine, its interfaces and routes)."""
    return {
        "taken_at": h.taken_at,
        "problems": list(h.problems),
        "interfaces": list(h.interfaces),
        "routes": [{"family": r.family, "interface": r.interface} for r in h.routes],
        "softether": [
            {
                "path": c.path,
                "hubs": list(c.hubs),
                "listener_ports": list(c.listener_ports),
                "vpngate": c.vpngate,
                "damage": c.damage,
                "accounts": [
                    {
                        "name": a.name,
                        "hostname": a.hostname,
                        "port": a.port,
                        "hub": a.hub,
                        "startup": a.startup,
                        "retries": a.retries,
                    }
                    for a in c.accounts
                ],
            }
            for c in h.softether
        ],
    }


def host_facts_from_dict(d: Any) -> HostFacts:
    """Decode `host_facts_to_dict`."""
    configs = []
    for c in _list(d, "softether"):
        accounts = tuple(
            SoftEtherAccount(
                name=_str(a, "name"),
                hostname=_str(a, "hostname"),
                port=_oint(a, "port"),
                hub=_str(a, "hub"),
                startup=bool(_get(a, "startup", bool, opt=False)),
                retries=_int(a, "retries"),
            )
            for a in _list(c, "accounts")
        )
        configs.append(
            SoftEtherConfig(
                path=_str(c, "path"),
                hubs=_strs(c, "hubs"),
                listener_ports=tuple(_int({"p": p}, "p") for p in _list(c, "listener_ports")),
                vpngate=bool(_get(c, "vpngate", bool, opt=False)),
                accounts=accounts,
                damage=_str(c, "damage"),
            )
        )
    routes = tuple(
        DefaultRoute(_str(r, "family"), _ostr(r, "interface"))
        for r in (_list(d, "routes") if "routes" in d else ())
    )
    interfaces = _strs(d, "interfaces") if "interfaces" in d else ()
    return HostFacts(_time(d, "taken_at"), tuple(configs), _strs(d, "problems"), interfaces, routes)


# ---------------------------------------------------------------- framing

MAX_FRAME = 64 * 1024 * 1024
"""Longest line a `FrameReader` takes (a `state` of 10,000 flows is about 8 MB)."""


def frame(record: JSONDict) -> bytes:
    """One record as it crosses a socket or fills a recording: compact JSON, UTF-8, newline.

    JSON escapes every control character inside strings, so the newline only ends records.
    """
    return (_text(record) + "\n").encode("utf-8")


class FrameReader:
    """Turns a byte stream back into records: feed it bytes as they come, get the JSON
    objects of the lines they complete.

    A line longer than `max_frame` is passed over up to its newline, and a line that is not
    a JSON object is passed over; both are counted in `bad`, never raised, so a reader of a
    socket keeps going after damage. Blank lines are ignored.
    """

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self.max_frame = max_frame
        self.bad = 0
        self._buf = bytearray()
        self._scanned = 0
        """Bytes of `_buf` already known to hold no newline (a long line comes in chunks)."""
        self._skipping = False
        """Inside a line that was too long: drop bytes up to its newline."""

    @property
    def pending(self) -> int:
        """Bytes of an unfinished line held."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[JSONDict]:
        """The records completed by `data`, in order."""
        buf = self._buf
        buf += data
        out: list[JSONDict] = []
        start = 0
        while (end := buf.find(b"\n", max(start, self._scanned))) >= 0:
            line, start, self._scanned = buf[start:end], end + 1, 0
            if self._skipping:
                self._skipping = False
            elif line.strip():
                self._take(line, out)
        del buf[:start]
        self._scanned = len(buf)
        if len(buf) > self.max_frame:
            if not self._skipping:
                self.bad += 1
            self._skipping = True
            buf.clear()
            self._scanned = 0
        return out

    def _take(self, line: bytearray, out: list[JSONDict]) -> None:
        try:
            value = parse(line)
        except CodecError:
            self.bad += 1
            return
        if isinstance(value, dict):
            out.append(value)
        else:
            self.bad += 1
