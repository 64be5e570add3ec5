"""The codec: the flow record contract, round trips, and rejection of malformed records."""

from __future__ import annotations

import ipaddress
import json
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netwatch import codec
from netwatch.model import (
    Action,
    Alert,
    CertNames,
    Container,
    Counters,
    Direction,
    Endpoint,
    EnrichedFlow,
    Flow,
    FlowKey,
    Snapshot,
    Transport,
)
from tests.builders import make_alert, make_flow, make_label, make_process, make_snapshot


def test_outbound_flow_record_names_local_side_as_source() -> None:
    ef = make_flow(process=make_process("vpnclient"), label=make_label())
    d = codec.flow_to_dict(ef)
    assert d["type"] == "flow" and d["schema"] == codec.SCHEMA
    assert (d["src"], d["sport"], d["dst"], d["dport"]) == (
        "192.168.1.13",
        51000,
        "90.189.249.23",
        443,
    )
    assert d["process"]["name"] == "vpnclient"
    assert d["vpn"] is True and d["category"] == "vpn" and d["app"] == "openvpn"
    assert d["bytes_sent"] == 5 and d["bytes_received"] == 4200
    assert d["remote"]["country"] == "RU"


def test_inbound_flow_record_names_remote_side_as_source() -> None:
    ef = make_flow(direction=Direction.INBOUND, local_port=443, remote_port=50123)
    d = codec.flow_to_dict(ef)
    assert (d["src"], d["sport"], d["dst"], d["dport"]) == (
        "90.189.249.23",
        50123,
        "192.168.1.13",
        443,
    )
    back = codec.flow_from_dict(d)
    assert back == ef


def test_listening_socket_has_no_destination() -> None:
    ef = make_flow(remote_ip=None, direction=Direction.LISTEN, state="LISTEN", local_port=5555)
    d = codec.flow_to_dict(ef)
    assert d["dst"] is None and d["dport"] is None and d["direction"] == "listen"
    assert codec.flow_from_dict(d) == ef


def test_ipv4_mapped_addresses_are_unmapped() -> None:
    key = FlowKey(
        Transport.TCP,
        Endpoint(ipaddress.ip_address("::ffff:10.0.0.1"), 1),
        Endpoint(ipaddress.ip_address("::ffff:90.189.249.23"), 443),
    )
    assert key.local.ip == ipaddress.IPv4Address("10.0.0.1")
    d = codec.flow_to_dict(EnrichedFlow(Flow(key, Direction.OUTBOUND)))
    assert d["dst"] == "90.189.249.23"


def test_alert_and_snapshot_round_trip_through_json_lines() -> None:
    alert = make_alert(process=make_process("vpnserver"), count=3)
    snap = make_snapshot(flows=(make_flow(), make_flow(local_port=2)), alerts=(alert,))
    counted = Counters(sockets=9, flows=2, packets=40, capture_drops=1, queue_drops=2,
                       sample_ms=3.5, starts_named=7, starts_missed=3)  # fmt: skip
    snap = replace(snap, counters=counted)
    for obj in (alert, snap, snap.flows[0]):
        line = codec.dumps(obj)
        assert "\n" not in line
        assert codec.loads(line) == obj


def test_alert_action_round_trips_and_older_log_tags_decode_as_logged() -> None:
    logged = replace(make_alert(), tags=("vpngate",), action=Action.LOG)
    record = codec.alert_to_dict(logged)
    assert record["action"] == "log" and record["tags"] == ["vpngate"]
    assert codec.loads(codec.dumps(logged)) == logged
    # Written before the field: the action was an extra `log` tag, or nothing (alert).
    del record["action"]
    old_logged = dict(record, tags=["vpngate", "log"])
    assert codec.alert_from_dict(old_logged) == logged
    assert codec.alert_from_dict(record).action is Action.ALERT
    assert codec.alert_from_dict(record).tags == ("vpngate",)
    with pytest.raises(codec.CodecError, match="action"):
        codec.alert_from_dict(dict(record, action="shout"))


def test_alert_direction_round_trips_and_older_records_have_none() -> None:
    inbound = replace(make_alert(), direction=Direction.INBOUND)
    record = codec.alert_to_dict(inbound)
    assert record["direction"] == "inbound"
    assert codec.loads(codec.dumps(inbound)) == inbound
    del record["direction"]  # written before the field existed
    assert codec.alert_from_dict(record).direction is None
    with pytest.raises(codec.CodecError, match="direction"):
        codec.alert_from_dict(dict(record, direction="sideways"))


@pytest.mark.parametrize(
    "line",
    [
        "",
        "not json",
        "[]",
        '{"schema": 99, "type": "flow"}',
        '{"schema": 1, "type": "nope"}',
        '{"schema": 1, "type": "flow"}',
        '{"schema": 1, "type": "flow", "direction": "outbound", "transport": "tcp", "src": "x"}',
        '{"schema": 1, "type": "flow", "direction": "sideways", "transport": "tcp",'
        ' "src": "1.2.3.4"}',
        '{"schema": 1, "type": "alert", "id": 1}',
        '{"schema": 1, "type": "snapshot", "seq": "one"}',
        '{"schema": 1, "type": "flow", "direction": "outbound", "transport": "tcp",'
        ' "src": "1.2.3.4", "sport": 99999}',
        '{"schema": 1, "type": "flow", "direction": "outbound", "transport": "tcp",'
        ' "src": "1.2.3.4", "tls_cert": {"subject": "CN=a", "issuer": 7}}',
        '{"schema": 1, "type": "flow", "direction": "outbound", "transport": "tcp",'
        ' "src": "1.2.3.4", "tls_cert": {"subject": "CN=a", "issuer": "CN=a", "san": [1]}}',
    ],
)
def test_malformed_records_raise_codec_error(line: str) -> None:
    with pytest.raises(codec.CodecError):
        codec.loads(line)


ips = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6))
texts = st.text(max_size=20)


@st.composite
def enriched_flows(draw: st.DrawFn) -> EnrichedFlow:
    direction = draw(st.sampled_from(list(Direction)))
    remote_ip = None if direction is Direction.LISTEN else str(draw(ips))
    ef = make_flow(
        remote_ip=remote_ip,
        remote_port=draw(st.integers(0, 65535)),
        local_ip=str(draw(ips)),
        local_port=draw(st.integers(0, 65535)),
        transport=draw(st.sampled_from(list(Transport))),
        direction=direction,
        process=draw(st.none() | st.builds(make_process, name=texts, pid=st.integers(1, 2**22))),
        bytes_sent=draw(st.none() | st.integers(0, 2**62)),
        bytes_received=draw(st.none() | st.integers(0, 2**62)),
        label=draw(
            st.none() | st.builds(make_label, name=texts, category=texts, vpn=st.booleans())
        ),
        sni=draw(st.none() | texts),
        dns_name=draw(st.none() | texts),
        tls_cert=draw(
            st.none() | st.builds(CertNames, texts, texts, st.lists(texts, max_size=3).map(tuple))
        ),
    )
    http = {
        "http_request": draw(st.none() | texts),
        "body_prefix": draw(st.none() | st.binary(max_size=64)),
        "interface": draw(st.none() | texts),
        "egress_by": draw(st.none() | st.just("capture")),
        "forwarded": draw(st.booleans()),
        "container": draw(
            st.none()
            | st.builds(Container, st.integers(1, 2**40), st.none() | texts, st.none() | texts)
        ),
    }
    return replace(ef, flow=replace(ef.flow, **http))


def test_egress_interface_round_trips_and_old_records_have_none() -> None:
    ef = make_flow()
    ef = replace(ef, flow=replace(ef.flow, interface="wg0", egress_by="capture"))
    d = codec.flow_to_dict(ef)
    assert (d["interface"], d["egress_by"]) == ("wg0", "capture")
    assert codec.flow_from_dict(d) == ef
    del d["interface"], d["egress_by"]  # a record written before the fields existed
    old = codec.flow_from_dict(d).flow
    assert (old.interface, old.egress_by) == (None, None)


def test_container_and_forwarded_round_trip_and_old_records_have_none() -> None:
    ef = make_flow()
    box = Container(netns=4026532999, name="web", runtime="podman")
    ef = replace(ef, flow=replace(ef.flow, forwarded=True, container=box))
    d = codec.flow_to_dict(ef)
    assert d["forwarded"] is True
    assert d["container"] == {"netns": 4026532999, "name": "web", "runtime": "podman"}
    assert codec.flow_from_dict(d) == ef
    del d["forwarded"], d["container"]  # a record written before the fields existed
    old = codec.flow_from_dict(d).flow
    assert (old.forwarded, old.container) == (False, None)
    with pytest.raises(codec.CodecError):
        codec.flow_from_dict({**d, "container": {"name": "x"}})


@given(enriched_flows())
def test_any_flow_round_trips(ef: EnrichedFlow) -> None:
    assert codec.loads(codec.dumps(ef)) == ef


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda c: st.lists(c) | st.dictionaries(st.text(), c),
    )
)
def test_garbage_json_never_escapes_as_another_exception(value: object) -> None:
    for kind in ("flow", "alert", "snapshot"):
        record = value if not isinstance(value, dict) else {**value, "schema": 1, "type": kind}
        try:
            decoded = codec.loads(json.dumps(record))
        except codec.CodecError:
            continue
        assert isinstance(decoded, (EnrichedFlow, Alert, Snapshot))
