"""Certificate names as flow facts: the table keeps them, records carry them, rules and the
dashboard read them; records written before the field existed still load."""

from __future__ import annotations

import json

from scapy.layers.tls.handshake import TLSClientHello
from scapy.layers.tls.record import TLS

from netwatch import codec
from netwatch.detect.conditions import Problems, compile_node, parse_node
from netwatch.detect.fields import FIELDS, Env
from netwatch.detect.loader import FLOW_TABLE
from netwatch.detect.policy import PolicyView
from netwatch.dissect import Dissector
from netwatch.flows.table import FlowTable
from netwatch.model import CertNames, Endpoint, EnrichedFlow, PacketMeta, Transport, parse_ip
from netwatch.ui.detail import flow_detail
from netwatch.ui.stats import Rate
from tests.builders import T0, make_flow, make_label
from tests.certs import FORTIGATE_SUBJECT, der, make_cert, server_flight

C = Endpoint(parse_ip("192.0.2.1"), 40000)
S = Endpoint(parse_ip("203.0.113.5"), 10443)
FORTI = CertNames(
    "CN=FGT60E0000000000,OU=FortiGate,O=Fortinet",
    "CN=FGT60E0000000000,OU=FortiGate,O=Fortinet",
    ("fgt.example",),
)


def _seg(src: Endpoint, dst: Endpoint, ts: float, flags: int, payload: bytes = b"") -> PacketMeta:
    return PacketMeta(ts, Transport.TCP, src, dst, 60 + len(payload), payload, flags, 6)


def test_flow_table_folds_the_certificate_and_the_better_label() -> None:
    d = Dissector()
    table = FlowTable(d.inspect, on_expire=d.forget)
    flight = server_flight(der(make_cert(FORTIGATE_SUBJECT, san=("fgt.example",))))
    hello = bytes(TLS(msg=[TLSClientHello()]))
    table.ingest(_seg(C, S, T0, 0x02))
    table.ingest(_seg(S, C, T0, 0x12))
    table.ingest(_seg(C, S, T0, 0x18, hello))
    first = table.ingest(_seg(S, C, T0, 0x18, flight[:200]))
    assert first.tls_cert is None and first.label is not None and first.label.name == "tls"
    state = table.ingest(_seg(S, C, T0, 0x18, flight[200:]))
    flow = state.to_flow()
    assert flow.tls_cert == FORTI
    assert flow.label is not None and flow.label.name == "fortinet" and flow.label.vpn
    assert state.done


def test_certificate_names_round_trip_and_old_records_still_load() -> None:
    ef = make_flow(tls_cert=FORTI, label=make_label("fortinet"))
    record = json.loads(codec.dumps(ef))
    assert record["tls_cert"] == {
        "subject": FORTI.subject,
        "issuer": FORTI.issuer,
        "san": ["fgt.example"],
    }
    assert codec.loads(codec.dumps(ef)) == ef
    del record["tls_cert"]  # a record written before certificates were read
    assert codec.loads(json.dumps(record)).flow.tls_cert is None


def _matches(raw: dict[str, object], ef: EnrichedFlow) -> bool:
    probs = Problems()
    node = parse_node(raw, "when", FLOW_TABLE, probs)
    assert node is not None, probs.items
    return bool(compile_node(node)(ef, Env(PolicyView(), T0)))


def test_rule_fields_read_subject_issuer_and_san() -> None:
    ef, bare = make_flow(tls_cert=FORTI), make_flow()
    assert _matches({"field": "tls.cert.subject", "contains": "OU=FortiGate"}, ef)
    assert _matches({"field": "tls.cert.issuer", "regex": "O=Fortinet$"}, ef)
    assert _matches({"field": "tls.cert.san", "has_domain": "example"}, ef)
    assert not _matches({"field": "tls.cert.subject", "exists": True}, bare)
    assert not _matches({"field": "tls.cert.san", "has_domain": "example"}, bare)
    assert FIELDS["tls.cert.san"].get(bare, Env(PolicyView(), T0)) == ()


def test_flow_detail_shows_the_certificate_names() -> None:
    ef = make_flow(tls_cert=FORTI)
    text = flow_detail(ef, Rate(0.0, 0.0), None, [], now=T0 + 5).plain
    assert "cert subject  CN=FGT60E0000000000,OU=FortiGate,O=Fortinet" in text
    assert "cert SAN      fgt.example" in text
    assert "cert subject" not in flow_detail(make_flow(), Rate(0.0, 0.0), None, [], T0).plain
