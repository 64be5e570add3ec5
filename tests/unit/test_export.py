"""Export formats round-trip through real parsers: csv, json, an RFC 5424 regex, ECS types."""

from __future__ import annotations

import csv
import io
import ipaddress
import json
import re
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netwatch import codec
from netwatch.export.community_id import community_id_v1
from netwatch.export.csv import csv_lines
from netwatch.export.ecs import ecs_document, format_ecs
from netwatch.export.jsonl import format_jsonl
from netwatch.export.schema import COLUMNS, HEADER, describe
from netwatch.export.sinks import FileSink
from netwatch.export.syslog import SD_ID, format_rfc5424
from netwatch.model import Action, Evidence, Severity, Transport
from tests.builders import T0, make_alert, make_process

I = ipaddress.ip_address  # noqa: E741  # short alias for the test vectors

# RFC 5424 section 6 as a regex: header, structured data (with escapes), message.
SD_PARAM = r'[^= \]"]{1,32}="(?:[^"\\\]]|\\["\\\]])*"'
SD_ELEMENT = rf"\[[^= \]\"]{{1,32}}(?: {SD_PARAM})*\]"
RFC5424 = re.compile(
    r"^<(?P<pri>\d{1,3})>1 "
    r"(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:Z|[+-]\d\d:\d\d)) "
    r"(?P<host>[!-~]{1,255}) (?P<app>[!-~]{1,48}) (?P<procid>[!-~]{1,128}) "
    r"(?P<msgid>[!-~]{1,32}) "
    rf"(?P<sd>-|(?:{SD_ELEMENT})+)"
    r"(?: (?P<msg>.*))?$",
    re.DOTALL,
)
SD_PARAMS = re.compile(r'([^= \]"]+)="((?:[^"\\\]]|\\["\\\]])*)"')


def sd_params(sd: str) -> dict[str, str]:
    return {k: re.sub(r"\\([\"\\\]])", r"\1", v) for k, v in SD_PARAMS.findall(sd)}


def tricky_alert() -> object:
    proc = make_process('vpn client, "beta"', pid=99, cmdline=("vpnclient", "--x=a b"))
    return replace(
        make_alert("vpn.unexpected_process", Severity.HIGH, process=proc),
        message='line one,\nline "two" ] \\ end',
        evidence=(Evidence("sni", "a,b"), Evidence("quote", '"')),
        tags=("vpn", "softether"),
    )


def test_jsonl_is_the_codec_record() -> None:
    a = tricky_alert()
    line = format_jsonl(a)  # type: ignore[arg-type]
    assert "\n" not in line
    assert codec.loads(line) == a


def test_csv_header_is_fixed_and_rows_round_trip() -> None:
    a = tricky_alert()
    b = make_alert("geo.new_country", Severity.LOW, alert_id="b")
    text = "".join(csv_lines([a, b]))  # type: ignore[list-item]
    assert "\r\n" in text
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert tuple(rows[0]) == HEADER
    assert len(rows) == 3
    rec = dict(zip(HEADER, rows[1], strict=True))
    assert rec["message"] == 'line one,\nline "two" ] \\ end'
    assert rec["process"] == 'vpn client, "beta"'
    assert rec["evidence"] == 'sni=a,b; quote="'
    assert rec["severity"] == "high"
    assert rec["remote_ip"] == "90.189.249.23"
    assert rec["country"] == "RU"
    assert rec["tags"] == "vpn;softether"
    assert datetime.fromisoformat(rec["first_seen"]).timestamp() == pytest.approx(T0)
    assert dict(zip(HEADER, rows[2], strict=True))["process"] == ""


def test_every_format_shows_the_policy_action() -> None:
    # A rule the policy sets to `log` is exported like any alert; each format says so.
    for action in (Action.ALERT, Action.LOG):
        a = replace(make_alert(), action=action)
        assert json.loads(format_jsonl(a))["action"] == action.value
        rows = list(csv.reader(io.StringIO("".join(csv_lines([a])), newline="")))
        assert dict(zip(HEADER, rows[1], strict=True))["action"] == action.value
        m = RFC5424.match(format_rfc5424(a, hostname="h", procid=1))
        assert m is not None and sd_params(m["sd"])["action"] == action.value
        assert ecs_document(a)["netwatch"]["action"] == action.value
        assert a.tags == make_alert().tags  # the action is no tag


def test_header_is_documented() -> None:
    table = describe()
    for c in COLUMNS:
        assert c.description
        assert f"`{c.name}`" in table


def test_rfc5424_parses_with_structured_data() -> None:
    a = tricky_alert()
    line = format_rfc5424(a, hostname="host one", facility=3, procid=4242)  # type: ignore[arg-type]
    m = RFC5424.match(line)
    assert m, line
    assert int(m["pri"]) == 3 * 8 + 3  # daemon.err for high
    assert m["host"] == "hostone"
    assert m["app"] == "netwatch"
    assert m["procid"] == "4242"
    assert m["sd"].startswith(f"[{SD_ID} ")
    params = sd_params(m["sd"])
    assert params["rule"] == "vpn.unexpected_process"
    assert params["severity"] == "high"
    assert params["process"] == 'vpn client, "beta"'
    assert params["remote"] == "90.189.249.23"
    assert m["msg"] == 'line one, line "two" ] \\ end'


@settings(max_examples=200, deadline=None)
@given(
    text=st.text(max_size=40),
    sev=st.sampled_from(list(Severity)),
)
def test_rfc5424_holds_for_any_text(text: str, sev: Severity) -> None:
    proc = make_process(text or "p")
    a = replace(make_alert(text or "r", sev, process=proc), message=text)
    line = format_rfc5424(a, hostname=text)
    m = RFC5424.match(line)
    assert m, line
    params = sd_params(m["sd"])
    assert params["process"] == (text or "p")
    assert params["rule"] == (text or "r")


# ECS field types from the ECS 8 reference: keyword, date, long, ip.
ECS_TYPES = {
    "@timestamp": "date",
    "event.kind": "keyword",
    "event.category": "keyword[]",
    "event.type": "keyword[]",
    "event.severity": "long",
    "event.start": "date",
    "rule.id": "keyword",
    "rule.name": "keyword",
    "process.pid": "long",
    "process.name": "keyword",
    "process.executable": "keyword",
    "process.args": "keyword[]",
    "process.parent.pid": "long",
    "source.ip": "ip",
    "source.port": "long",
    "destination.ip": "ip",
    "destination.port": "long",
    "destination.geo.country_iso_code": "keyword",
    "destination.as.number": "long",
    "destination.as.organization.name": "keyword",
    "network.transport": "keyword",
    "network.community_id": "keyword",
    "message": "match_only_text",
}


def _flatten(d: dict[str, object], prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for k, v in d.items():
        if isinstance(v, dict) and k != "netwatch":
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _check_type(kind: str, value: object) -> bool:
    if kind == "date":
        return isinstance(value, str) and datetime.fromisoformat(value).tzinfo is not None
    if kind == "long":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "ip":
        return isinstance(value, str) and bool(ipaddress.ip_address(value))
    if kind == "keyword[]":
        return isinstance(value, list) and all(isinstance(x, str) for x in value)
    return isinstance(value, str)


def test_ecs_document_has_required_fields_with_ecs_types() -> None:
    a = tricky_alert()
    doc = json.loads(format_ecs(a))  # type: ignore[arg-type]
    flat = _flatten(doc)
    for field, kind in ECS_TYPES.items():
        assert field in flat, field
        assert _check_type(kind, flat[field]), (field, flat[field])
    assert flat["event.kind"] == "alert"
    assert flat["event.category"] == ["network"]
    assert flat["rule.id"] == "vpn.unexpected_process"
    assert flat["network.transport"] == "tcp"
    assert flat["destination.geo.country_iso_code"] == "RU"
    assert flat["destination.as.number"] == 12389
    assert flat["source.ip"] == "192.168.1.13"
    expected = community_id_v1(I("192.168.1.13"), I("90.189.249.23"), 6, 51000, 443)
    assert flat["network.community_id"] == expected
    assert None not in flat.values()


def test_ecs_without_flow_or_process_leaves_fields_out() -> None:
    a = replace(make_alert(), flow_key=None, remote=None, process=None)
    doc = ecs_document(a)
    assert "source" not in doc
    assert "process" not in doc
    assert "community_id" not in doc.get("network", {})


@pytest.mark.parametrize(
    ("src", "dst", "proto", "sport", "dport", "seed", "want"),
    [
        # Vectors from the Community ID spec's baseline (corelight/community-id-spec).
        ("1.2.3.4", "5.6.7.8", 6, 1122, 3344, 0, "1:wCb3OG7yAFWelaUydu0D+125CLM="),
        ("5.6.7.8", "1.2.3.4", 6, 3344, 1122, 0, "1:wCb3OG7yAFWelaUydu0D+125CLM="),
        ("1.2.3.4", "5.6.7.8", 17, 1122, 3344, 0, "1:0Mu9InQx6z4ZiCZM/7HXi2WMhOg="),
        ("1.2.3.4", "5.6.7.8", 1, 8, 0, 0, "1:crodRHL2FEsHjbv3UkRrfbs4bZ0="),
        ("5.6.7.8", "1.2.3.4", 1, 0, 0, 0, "1:crodRHL2FEsHjbv3UkRrfbs4bZ0="),
        ("1.2.3.4", "5.6.7.8", 46, None, None, 0, "1:ikv3kmf89luf73WPz1jOs49S768="),
        (
            "fe80:1:203:405:607:809:a0b:c0d",
            "fe80:1011:1213:1415:1617:1819:1a1b:1c1d",
            58, 128, 0, 0, "1:0bf7hyMJUwt3fMED7z8LIfRpBeo=",
        ),
        ("1.2.3.4", "5.6.7.8", 6, 1122, 3344, 1, "1:HhA1B+6CoLbiKPEs5nhNYN4XWfk="),
        ("1.2.3.4", "5.6.7.8", 17, 1122, 3344, 1, "1:OShq+iKDAMVouh/4bMxB9Sz4amw="),
    ],
)  # fmt: skip
def test_community_id_spec_vectors(
    src: str, dst: str, proto: int, sport: int | None, dport: int | None, seed: int, want: str
) -> None:
    assert community_id_v1(I(src), I(dst), proto, sport, dport, seed) == want


def test_community_id_udp_transport_in_ecs() -> None:
    a = make_alert()
    k = a.flow_key
    assert k is not None
    doc = ecs_document(replace(a, flow_key=replace(k, transport=Transport.UDP)))
    assert doc["network"]["transport"] == "udp"


def test_file_sink_rotates_and_keeps_csv_header(tmp_path: Path) -> None:
    path = tmp_path / "alerts.csv"
    sink = FileSink(path, "csv", max_bytes=2000, backups=2)
    for i in range(30):
        sink.emit(make_alert(alert_id=f"a{i}"))
    sink.close()
    files = sorted(tmp_path.glob("alerts.csv*"))
    assert [f.name for f in files] == ["alerts.csv", "alerts.csv.1", "alerts.csv.2"]
    for f in files:
        rows = list(csv.reader(f.open(newline="")))
        assert tuple(rows[0]) == HEADER
        assert all(r[0].startswith("a") for r in rows[1:])
        assert f.stat().st_size <= 2000 + 600


def test_file_sink_jsonl_lines_decode(tmp_path: Path) -> None:
    path = tmp_path / "alerts.jsonl"
    sink = FileSink(path, "jsonl")
    sink.emit(make_alert())
    sink.emit(make_alert(alert_id="two"))
    sink.close()
    ids = [codec.loads(x).id for x in path.read_text().splitlines()]  # type: ignore[union-attr]
    assert ids == ["vpngate.list_fetch:1", "two"]


def test_readme_documents_the_csv_header() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    assert ",".join(HEADER) in readme.replace("`\n`", "")


def test_the_config_knows_every_export_format_the_sinks_write() -> None:
    from netwatch.config import EXPORT_FORMATS
    from netwatch.export.sinks import FORMATS

    assert EXPORT_FORMATS == FORMATS
