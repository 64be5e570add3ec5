"""Every label shows its confidence and evidence, and every alert carries its flow's label.

Issue 14: a reader of an alert (dashboard, CSV, syslog, ECS, JSONL) must see what the flow
was taken for, how sure that is, and on what evidence, not only the rule's own conditions.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import replace

import pytest

from netwatch import codec
from netwatch.detect.engine import RuleEngine
from netwatch.detect.loader import check_rule_texts
from netwatch.dissect import labels
from netwatch.export.csv import csv_lines
from netwatch.export.ecs import ecs_document
from netwatch.export.schema import HEADER
from netwatch.export.syslog import format_rfc5424
from netwatch.model import Confidence, EnrichedFlow, Evidence, Label
from netwatch.ui.detail import alert_detail, flow_detail
from netwatch.ui.stats import Rate
from tests.builders import T0, make_alert, make_flow, make_label
from tests.unit.test_export import RFC5424, sd_params
from tests.unit.test_rules_pack import flow

VPN_RULE = """
[[rule]]
id = "t.vpn"
title = "VPN"
severity = "low"
identifier = ["process.name"]
suppress_for = 600
message = "{process} uses a VPN"
when = { field = "label.vpn", eq = true }
"""

PORT_GUESS = make_label(
    "softether", confidence=Confidence.GUESS, evidence=(("tls_port", "992"), ("sni", "(none)"))
)


def test_confidence_ranks_signature_over_name_over_list_over_port() -> None:
    order = [Confidence.GUESS, Confidence.LOW, Confidence.MEDIUM, Confidence.HIGH]
    assert [c.rank for c in order] == [0, 1, 2, 3]
    assert [c.value for c in order] == ["guess", "low", "medium", "high"]
    # A VPN label by port alone still outranks any plain one, and loses to any better VPN one.
    plain_high = labels.plain("tls", "web", labels.HIGH)
    vpn_low = labels.vpn("openvpn", labels.LOW)
    assert labels.rank(plain_high) < labels.rank(PORT_GUESS) < labels.rank(vpn_low)


def test_label_summary_names_confidence_and_evidence_kinds_once() -> None:
    lab = Label("openvpn", "vpn", True, Confidence.HIGH, (
        Evidence("opcode", "a"), Evidence("session_id", "b"), Evidence("opcode", "c")))  # fmt: skip
    assert lab.evidence_kinds == ("opcode", "session_id")
    assert lab.summary() == "openvpn (high: opcode, session_id)"
    assert Label("dns", "network").summary() == "dns (medium)"


def test_alert_record_round_trips_its_label_and_old_records_have_none() -> None:
    alert = make_alert(label=PORT_GUESS)
    record = json.loads(codec.dumps(alert))
    assert record["label"] == {
        "name": "softether",
        "category": "vpn",
        "vpn": True,
        "confidence": "guess",
        "evidence": [{"name": "tls_port", "value": "992"}, {"name": "sni", "value": "(none)"}],
    }
    assert codec.loads(codec.dumps(alert)) == alert
    del record["label"]
    assert codec.loads(json.dumps(record)) == replace(alert, label=None)


def test_csv_appends_label_columns_at_the_end() -> None:
    at = HEADER.index("tags")
    assert HEADER[at : at + 5] == ("tags", "action", "label", "label_confidence", "label_evidence")
    rows = list(csv.reader(io.StringIO("".join(csv_lines([
        make_alert(label=PORT_GUESS), make_alert(alert_id="bare")])), newline="")))  # fmt: skip
    labelled = dict(zip(HEADER, rows[1], strict=True))
    assert labelled["label"] == "softether"
    assert labelled["label_confidence"] == "guess"
    assert labelled["label_evidence"] == "tls_port=992; sni=(none)"
    assert labelled["evidence"] == "sni=www.vpngate.net"  # the rule's own, unchanged
    bare = dict(zip(HEADER, rows[2], strict=True))
    assert (bare["label"], bare["label_confidence"], bare["label_evidence"]) == ("", "", "")


def test_syslog_structured_data_carries_the_label() -> None:
    line = format_rfc5424(make_alert(label=PORT_GUESS), hostname="h", procid=1)
    m = RFC5424.match(line)
    assert m, line
    params = sd_params(m["sd"])
    assert params["label"] == "softether"
    assert params["label_confidence"] == "guess"
    assert params["label_evidence"] == "tls_port=992; sni=(none)"


def test_ecs_puts_the_label_under_netwatch() -> None:
    doc = ecs_document(make_alert(label=PORT_GUESS))
    assert doc["netwatch"]["label"] == {
        "name": "softether",
        "category": "vpn",
        "vpn": True,
        "confidence": "guess",
        "evidence": [{"name": "tls_port", "value": "992"}, {"name": "sni", "value": "(none)"}],
    }
    assert "label" not in ecs_document(make_alert())["netwatch"]


def test_alerts_take_the_flow_label_when_raised_and_when_updated() -> None:
    ruleset, problems = check_rule_texts([("t.toml", VPN_RULE)])
    assert problems == []
    engine = RuleEngine(ruleset)
    guess = with_label(flow(remote_ip="198.51.100.1"), PORT_GUESS)
    [raised] = engine.evaluate([guess], T0 + 1)
    assert raised.label == PORT_GUESS
    sure = with_label(flow(remote_ip="198.51.100.2", at=T0 + 10), make_label("softether"))
    [updated] = engine.evaluate([guess, sure], T0 + 12)
    assert updated.id == raised.id and updated.count == 2
    assert updated.label == make_label("softether")


def with_label(ef: EnrichedFlow, label: Label) -> EnrichedFlow:
    return replace(ef, flow=replace(ef.flow, label=label))


def test_dashboard_details_show_label_confidence_and_evidence() -> None:
    ef = make_flow(label=PORT_GUESS)
    text = flow_detail(ef, Rate(None, None), None, [], now=T0 + 5).plain
    assert "protocol      softether (vpn)" in text
    assert "confidence    guess" in text
    assert "tls_port      992" in text
    text = alert_detail(make_alert(label=PORT_GUESS), None, now=T0 + 5).plain
    assert "Label" in text and "confidence    guess" in text and "tls_port      992" in text


@pytest.mark.parametrize(
    "bad",
    ["softether", ["softether"], {"category": "vpn"}, {"name": 3},
     {"name": "softether", "confidence": "sure"}, {"name": "x", "evidence": [{"name": 1}]}],
)  # fmt: skip
def test_a_damaged_alert_label_is_a_codec_error(bad: object) -> None:
    record = json.loads(codec.dumps(make_alert(label=PORT_GUESS)))
    record["label"] = bad
    with pytest.raises(codec.CodecError):
        codec.loads(json.dumps(record))
