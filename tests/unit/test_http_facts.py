"""Clear HTTP facts on the flow: the request line and the response body's first bytes.

The dissector reads both; the flow table keeps them on `Flow` (not only in the label's
evidence, which a better label can replace), the codec writes and reads them, and the rule
fields `http_request`, `http_path` and `http_body` read them from there.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from netwatch import codec
from netwatch.detect.engine import RuleEngine
from netwatch.detect.fields import FIELDS, Env
from netwatch.detect.policy import PolicyView
from netwatch.dissect import Dissector
from netwatch.flows.table import FlowTable
from netwatch.model import Endpoint, EnrichedFlow, PacketMeta, Transport, parse_ip
from tests.builders import T0, make_flow, make_label, make_process, make_remote

CLIENT = Endpoint(parse_ip("192.168.1.13"), 51000)
SERVER = Endpoint(parse_ip("203.0.113.80"), 80)
BODY = b"*vpn_servers\r\n#HostName,IP,Score,Ping,Speed\r\n"


def _segment(src: Endpoint, dst: Endpoint, payload: bytes, ts: float) -> PacketMeta:
    return PacketMeta(
        ts=ts,
        transport=Transport.TCP,
        src=src,
        dst=dst,
        length=40 + len(payload),
        payload=payload,
        tcp_flags=0x18,
        ip_proto=6,
    )


def _exchange(host: bytes, path: bytes) -> EnrichedFlow:
    """One clear HTTP GET and its response through the real dissector and flow table."""
    table = FlowTable(Dissector().inspect)
    request = b"GET " + path + b" HTTP/1.1\r\nHost: " + host + b"\r\nAccept: */*\r\n\r\n"
    response = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n" + BODY
    state = table.ingest(_segment(CLIENT, SERVER, request, T0))
    table.ingest(_segment(SERVER, CLIENT, response, T0 + 0.1))
    flow = replace(state.to_flow(), process=make_process("curl"))
    return EnrichedFlow(flow, make_remote(str(SERVER.ip), country="JP"))


def _fired(ef: EnrichedFlow, rule_id: str) -> bool:
    return any(a.rule_id == rule_id for a in RuleEngine().evaluate([ef], T0 + 1))


def test_the_flow_table_keeps_the_request_line_and_the_body_prefix() -> None:
    ef = _exchange(b"mirror.example", b"/list.txt")
    assert ef.flow.http_request == "GET /list.txt HTTP/1.1"
    assert ef.flow.body_prefix is not None and ef.flow.body_prefix.startswith(b"*vpn_servers")


def test_the_list_fetch_rule_fires_on_the_body_when_a_better_label_kept_its_place() -> None:
    # SoftEther's own host labels the flow `softether` (high) from the Host header; the body's
    # `vpngate` label is no more confident, so the flow keeps the first label and its evidence.
    # Only the body prefix on the flow shows the VPN Gate relay list.
    ef = _exchange(b"www.softether.org", b"/vpngate/list.txt")
    assert ef.flow.label is not None and ef.flow.label.name == "softether"
    assert all(e.name != "body_prefix" for e in ef.flow.label.evidence)
    assert _fired(ef, "vpngate.list_fetch")
    # Without the fact, nothing else in this flow says VPN Gate.
    assert not _fired(replace(ef, flow=replace(ef.flow, body_prefix=None)), "vpngate.list_fetch")


def test_http_path_reads_the_request_line_on_the_flow() -> None:
    ef = make_flow(remote_port=80, label=make_label("http", "web", False))
    ef = replace(ef, flow=replace(ef.flow, http_request="GET /api/iphone/ HTTP/1.1"))
    env = Env(PolicyView(), T0, None, {})
    assert FIELDS["http_request"].get(ef, env) == "GET /api/iphone/ HTTP/1.1"
    assert FIELDS["http_path"].get(ef, env) == "/api/iphone/"
    assert _fired(ef, "vpngate.list_fetch")
    other = replace(ef, flow=replace(ef.flow, http_request="GET /index.html HTTP/1.1"))
    assert FIELDS["http_path"].get(other, env) == "/index.html"
    assert not _fired(other, "vpngate.list_fetch")


def test_the_codec_keeps_the_facts_and_reads_records_without_them() -> None:
    ef = _exchange(b"www.softether.org", b"/vpngate/list.txt")
    odd = replace(ef.flow, body_prefix=bytes(range(256)))
    for flow in (ef.flow, odd):
        assert codec.loads(codec.dumps(EnrichedFlow(flow, ef.remote))) == EnrichedFlow(
            flow, ef.remote
        )
    old = codec.flow_to_dict(ef)
    del old["http_request"], old["body_prefix"]
    decoded = codec.flow_from_dict(old).flow
    assert decoded.http_request is None and decoded.body_prefix is None


def test_a_body_prefix_that_is_not_bytes_is_a_codec_error() -> None:
    record = codec.flow_to_dict(make_flow())
    record["body_prefix"] = "\u20ac"
    with pytest.raises(codec.CodecError, match="body_prefix"):
        codec.loads(json.dumps(record))
