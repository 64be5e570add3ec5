"""ECS documents (alerts and flow records) checked field by field against the ECS reference.

`tests/data/ecs_fields.toml` is a subset of ECS's `ecs_flat.yml` (names, types, array
normalisation, allowed and expected values; its header names the elastic/ecs commit it was
checked against) for exactly the fields netwatch writes. Every key a document
has outside netwatch's own `netwatch.*` namespace must be an ECS field there, with a JSON value
of its type; and every field listed there must be written by some document here, so the
subset cannot keep fields netwatch stopped writing.
"""

from __future__ import annotations

import ipaddress
import json
import re
import tomllib
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from netwatch.export.ecs import ECS_VERSION, EcsHost, ecs_document, ecs_flow_document, this_host
from netwatch.export.flowlog import FlowReport, Reason
from netwatch.model import Container, Direction, Label, Severity
from tests.builders import T0, make_alert, make_flow, make_process, make_remote

REFERENCE = tomllib.loads(
    (Path(__file__).resolve().parents[1] / "data" / "ecs_fields.toml").read_text("utf-8")
)
FIELDS: dict[str, dict[str, Any]] = REFERENCE["fields"]
HOST = EcsHost("probe", architecture="x86_64", os_type="linux", os_kernel="6.1.0-test")
ISO_8601 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)$")


def flatten(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted ECS names -> values; `netwatch.*` (custom fields) is left out."""
    out: dict[str, Any] = {}
    for k, v in doc.items():
        name = f"{prefix}{k}"
        if name == "netwatch":
            continue
        if isinstance(v, dict):
            out.update(flatten(v, f"{name}."))
        else:
            out[name] = v
    return out


def _scalar_ok(kind: str, value: Any) -> bool:
    if kind in ("keyword", "wildcard", "match_only_text", "text", "constant_keyword"):
        return isinstance(value, str) and value != ""
    if kind == "long":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind in ("float", "scaled_float"):
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "ip":
        try:
            ipaddress.ip_address(value)
        except (ValueError, TypeError):
            return False
        return isinstance(value, str)
    if kind == "date":
        if not (isinstance(value, str) and ISO_8601.match(value)):
            return False
        return datetime.fromisoformat(value).tzinfo is not None
    if kind == "geo_point":
        return isinstance(value, dict) and {"lat", "lon"} <= value.keys()
    raise AssertionError(f"no check for ECS type {kind!r}")


def problems(doc: dict[str, Any]) -> list[str]:
    """Every way `doc` departs from the reference: unknown names, wrong types or values."""
    out = []
    for name, value in flatten(doc).items():
        spec = FIELDS.get(name)
        if spec is None:
            out.append(f"{name}: not an ECS field (or missing from tests/data/ecs_fields.toml)")
            continue
        array = "array" in spec.get("normalize", ())
        if array and not isinstance(value, list):
            out.append(f"{name}: ECS expects an array, got {value!r}")
            continue
        if not array and isinstance(value, list):
            out.append(f"{name}: ECS expects one value, got a list")
            continue
        for v in value if array else [value]:
            if not _scalar_ok(spec["type"], v):
                out.append(f"{name}: {v!r} is not an ECS {spec['type']}")
            allowed = spec.get("allowed_values")
            if allowed is not None and v not in allowed:
                out.append(f"{name}: {v!r} is not one of ECS's allowed values")
            expected = spec.get("expected_values")
            if expected is not None and v not in expected:
                out.append(f"{name}: {v!r} is not one of ECS's expected values")
    return out


# ---------------------------------------------------------------- the documents under test


def _proc() -> Any:
    return make_process("openvpn", pid=321, exe="/usr/sbin/openvpn", cmdline=("openvpn", "c"))


def alerts() -> dict[str, Any]:
    """Alerts of every shape: outbound, inbound, without a flow, without a process."""
    label = Label("openvpn", "vpn", vpn=True)
    out = replace(
        make_alert("vpn.unexpected", Severity.HIGH, process=_proc(), label=label),
        tags=("vpn", "openvpn"),
    )
    inbound = replace(out, direction=Direction.INBOUND, id="in")
    bare = replace(make_alert(), flow_key=None, process=None, direction=None, id="bare")
    remote_only = replace(make_alert(), flow_key=None, direction=None, id="remote-only")
    old_record = replace(make_alert(), direction=None, id="old")
    return {"out": out, "in": inbound, "bare": bare, "remote": remote_only, "old": old_record}


def reports() -> dict[str, FlowReport]:
    """Flow records: outbound with a process, inbound, in a container, forwarded, no counts."""
    lbl = Label("tls", "web")
    out = make_flow(process=_proc(), label=lbl, sni="vpn.example.net")
    out = replace(out, flow=replace(out.flow, packets_sent=7, packets_received=9))
    inbound = make_flow(
        remote_ip="198.51.100.7",
        remote_port=50123,
        local_port=22,
        direction=Direction.INBOUND,
        bytes_sent=3000,
        bytes_received=400,
        remote=make_remote("198.51.100.7", country="DE", asn=3320, as_org="Deutsche Telekom AG"),
    )
    boxed = make_flow(local_port=40000, dns_name="updates.example.org")
    boxed = replace(
        boxed, flow=replace(boxed.flow, container=Container(4026532201, "web", "docker"))
    )
    routed = make_flow(local_ip="10.0.0.5", local_port=40001)
    routed = replace(routed, flow=replace(routed.flow, forwarded=True, interface="eth0"))
    v6 = make_flow(remote_ip="2001:db8::7", local_ip="2001:db8::1", bytes_sent=None,
                   bytes_received=None, with_remote=False)  # fmt: skip

    def report(ef: Any, reason: Reason = Reason.END) -> FlowReport:
        f = ef.flow
        return FlowReport(ef, reason, T0, T0 + 61.5, f.bytes_sent, f.bytes_received,
                          f.packets_sent, f.packets_received)  # fmt: skip

    return {
        "out": report(out),
        "out-active": report(out, Reason.ACTIVE),
        "in": report(inbound),
        "container": report(boxed, Reason.SHUTDOWN),
        "forwarded": report(routed),
        "v6": report(v6),
    }


def all_documents() -> dict[str, dict[str, Any]]:
    docs = {f"alert {k}": ecs_document(a, HOST) for k, a in alerts().items()}
    docs |= {f"flow {k}": ecs_flow_document(r, HOST) for k, r in reports().items()}
    return docs


@pytest.mark.parametrize("name", sorted(all_documents()))
def test_every_ecs_field_has_its_reference_name_and_type(name: str) -> None:
    doc = json.loads(json.dumps(all_documents()[name]))  # as a SIEM reads the NDJSON line
    assert problems(doc) == []
    assert doc["ecs"]["version"] == ECS_VERSION == REFERENCE["ecs_version"]


def test_the_reference_holds_exactly_the_fields_netwatch_writes() -> None:
    written = set().union(*(flatten(d).keys() for d in all_documents().values()))
    assert set(FIELDS) - written == set(), "listed in ecs_fields.toml but never written"


def test_the_checker_catches_wrong_names_types_and_values() -> None:
    doc = ecs_document(alerts()["out"], HOST)
    assert problems(doc) == []
    bad = json.loads(json.dumps(doc))
    bad["source"]["port"] = "51000"
    bad["network"]["direction"] = "outgoing"
    bad["event"]["category"] = "network"
    bad["source"]["country"] = "RU"
    bad["@timestamp"] = "yesterday"
    bad["event"]["kind"] = "incident"
    bad["event"]["type"] = ["connection", "finished"]
    bad["host"]["os"]["type"] = "solaris"
    found = "\n".join(problems(bad))
    for name in ("source.port", "network.direction", "event.category", "source.country",
                 "@timestamp"):  # fmt: skip
        assert name in found
    assert "event.kind: 'incident' is not one of ECS's allowed values" in found
    assert "event.type: 'finished' is not one of ECS's allowed values" in found
    assert "host.os.type: 'solaris' is not one of ECS's expected values" in found
    assert "network.direction: 'outgoing' is not one of ECS's expected values" in found


def test_inbound_alert_has_the_remote_side_as_source() -> None:
    doc = ecs_document(alerts()["in"], HOST)
    assert doc["source"]["ip"] == "90.189.249.23"
    assert doc["source"]["port"] == 443
    assert doc["source"]["geo"]["country_iso_code"] == "RU"
    assert doc["source"]["as"]["number"] == 12389
    assert doc["destination"] == {"ip": "192.168.1.13", "port": 51000}
    assert doc["network"]["direction"] == "ingress"


def test_outbound_alert_keeps_this_host_as_source_with_host_and_observer() -> None:
    doc = ecs_document(alerts()["out"], HOST)
    assert doc["source"] == {"ip": "192.168.1.13", "port": 51000}
    assert doc["destination"]["ip"] == "90.189.249.23"
    assert doc["destination"]["geo"]["country_iso_code"] == "RU"
    assert doc["network"]["direction"] == "egress"
    assert doc["host"] == {
        "hostname": "probe",
        "name": "probe",
        "architecture": "x86_64",
        "os": {"type": "linux", "kernel": "6.1.0-test"},
    }
    assert doc["observer"]["vendor"] == "netwatch"
    assert doc["observer"]["product"] == "netwatch"
    assert doc["observer"]["type"] == "sensor"
    assert doc["observer"]["hostname"] == "probe"
    assert sorted(doc["related"]["ip"]) == ["192.168.1.13", "90.189.249.23"]


def test_alert_without_a_direction_says_unknown() -> None:
    doc = ecs_document(alerts()["old"], HOST)
    assert doc["network"]["direction"] == "unknown"
    assert doc["source"]["ip"] == "192.168.1.13"


def test_flow_record_is_an_event_with_the_period_traffic_per_side() -> None:
    doc = ecs_flow_document(reports()["out"], HOST)
    assert doc["event"]["kind"] == "event"
    assert doc["event"]["category"] == ["network"]
    assert doc["event"]["type"] == ["connection", "end"]
    assert doc["event"]["reason"] == "end"
    assert doc["event"]["duration"] == 61_500_000_000
    assert doc["source"]["bytes"] == 5 and doc["source"]["packets"] == 7
    assert doc["destination"]["bytes"] == 4200 and doc["destination"]["packets"] == 9
    assert doc["destination"]["domain"] == "vpn.example.net"
    assert doc["network"]["bytes"] == 4205 and doc["network"]["packets"] == 16
    assert doc["network"]["protocol"] == "tls"
    assert doc["network"]["direction"] == "egress"
    assert doc["process"]["executable"] == "/usr/sbin/openvpn"
    assert doc["netwatch"]["flow"]["final"] is True
    active = ecs_flow_document(reports()["out-active"], HOST)
    assert active["event"]["type"] == ["connection"]
    assert active["netwatch"]["flow"]["final"] is False


def test_inbound_flow_record_swaps_sides_and_their_counts() -> None:
    doc = ecs_flow_document(reports()["in"], HOST)
    assert doc["source"]["ip"] == "198.51.100.7" and doc["source"]["port"] == 50123
    assert doc["source"]["geo"]["country_iso_code"] == "DE"
    assert doc["source"]["bytes"] == 400  # what the remote side sent: this host received
    assert doc["destination"] == {"ip": "192.168.1.13", "port": 22, "bytes": 3000}
    assert doc["network"]["direction"] == "ingress"


def test_flow_record_names_its_container_and_forwarded_flows_have_no_host_direction() -> None:
    boxed = ecs_flow_document(reports()["container"], HOST)
    assert boxed["container"] == {"name": "web", "runtime": "docker"}
    assert boxed["netwatch"]["container"] == {"netns": 4026532201}
    assert boxed["event"]["reason"] == "shutdown"
    routed = ecs_flow_document(reports()["forwarded"], HOST)
    assert routed["network"]["direction"] == "unknown"
    assert "container" not in routed


def test_this_host_reads_the_machine_once() -> None:
    h = this_host()
    assert h.hostname and h is this_host()
    assert h.os_type == "linux"
