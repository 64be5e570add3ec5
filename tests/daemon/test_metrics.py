"""Prometheus metrics: values from snapshots, bounded labels, counters for running totals,
served on localhost, and text that `promtool check metrics` accepts."""

from __future__ import annotations

import shutil
import socket
import subprocess
import urllib.request
from dataclasses import replace

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from netwatch.daemon.metrics import MAX_LABELS, Metrics
from netwatch.model import Counters, Scope
from tests.builders import make_alert, make_flow, make_process, make_remote, make_snapshot

RUNNING_TOTALS = (
    "netwatch_alerts",
    "netwatch_bytes",
    "netwatch_capture_drops",
    "netwatch_queue_drops",
    "netwatch_connection_starts_named",
    "netwatch_connection_starts_missed",
    "netwatch_sink_drops",
    "netwatch_client_resyncs",
    "netwatch_socket_clients_refused",
    "netwatch_flow_log_drops",
    "netwatch_notify_drops",
)
"""Families that count since the daemon started: counters, exposed as `<name>_total`."""


def _value(m: Metrics, name: str, labels: dict[str, str] | None = None) -> float | None:
    return m.registry.get_sample_value(name, labels or {})


def test_counts_alerts_flows_bytes_and_drops() -> None:
    m = Metrics()
    curl = make_process("curl")
    f1 = make_flow(process=curl, bytes_sent=100, bytes_received=1000)
    snap = replace(
        make_snapshot(1, flows=(f1,), alerts=(make_alert(),)),
        counters=Counters(
            sockets=3, flows=1, capture_drops=4, queue_drops=2, sample_ms=12.0,
            starts_named=5, starts_missed=1,
        ),
    )  # fmt: skip
    m.observe(snap, clients=2)
    assert _value(m, "netwatch_connection_starts_named_total") == 5
    assert _value(m, "netwatch_connection_starts_missed_total") == 1
    f1b = make_flow(process=curl, bytes_sent=150, bytes_received=1000)
    m.observe(make_snapshot(2, flows=(f1b,)), clients=2)
    sent = {"direction": "sent", "process": "curl", "scope": "global", "country": "RU"}
    assert _value(m, "netwatch_bytes_total", sent) == 150
    recv = {**sent, "direction": "received"}
    assert _value(m, "netwatch_bytes_total", recv) == 1000
    rule = {"rule": "vpngate.list_fetch", "severity": "medium"}
    assert _value(m, "netwatch_alerts_total", rule) == 1
    # the second snapshot's totals were 0: a restarted source, nothing is taken back
    assert _value(m, "netwatch_capture_drops_total") == 4
    assert _value(m, "netwatch_socket_clients") == 2
    assert _value(m, "netwatch_sample_duration_seconds_count") == 2


def test_process_labels_are_bounded() -> None:
    m = Metrics()
    flows = tuple(
        make_flow(process=make_process(f"p{i}", pid=i), local_port=2000 + i) for i in range(80)
    )
    m.observe(make_snapshot(1, flows=flows))
    text = generate_latest(m.registry).decode()
    procs = {
        line.split('process="')[1].split('"')[0]
        for line in text.splitlines()
        if line.startswith("netwatch_bytes_total{")
    }
    assert len(procs) == MAX_LABELS + 1
    assert "other" in procs


def test_served_on_localhost() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    m = Metrics()
    m.observe(make_snapshot(1, alerts=(make_alert(),)))
    m.serve(port)
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()  # noqa: S310  # loopback
    assert b'netwatch_alerts_total{rule="vpngate.list_fetch",severity="medium"} 1.0' in body


def _observe_totals(m: Metrics, seq: int, drops: int, sink: int = 0, resyncs: int = 0) -> None:
    snap = replace(make_snapshot(seq), counters=Counters(capture_drops=drops, queue_drops=drops))
    m.observe(snap, sink_drops=sink, client_resyncs=resyncs)


def test_running_totals_are_counters_that_survive_a_restarted_source() -> None:
    m = Metrics()
    _observe_totals(m, 1, 4, sink=2, resyncs=1)
    _observe_totals(m, 2, 6, sink=2, resyncs=3)
    _observe_totals(m, 3, 1)  # the engine was rebuilt: its totals start again
    _observe_totals(m, 4, 3, sink=5)
    assert _value(m, "netwatch_capture_drops_total") == 9  # 4 + 2 + 1 + 2
    assert _value(m, "netwatch_queue_drops_total") == 9
    assert _value(m, "netwatch_sink_drops_total") == 7  # 2 + 0 + 0 + 5
    assert _value(m, "netwatch_client_resyncs_total") == 3
    text = generate_latest(m.registry).decode()
    types = {f.name: f.type for f in text_string_to_metric_families(text)}
    for name in RUNNING_TOTALS:
        assert types[name] == "counter", (name, types[name])
    for family in text_string_to_metric_families(text):
        if family.type == "counter":
            for sample in family.samples:
                assert sample.name.endswith(("_total", "_created")), sample.name


def test_loopback_and_lan_bytes_carry_a_scope_not_an_unknown_country() -> None:
    m = Metrics()
    curl = make_process("curl")
    lo = make_flow(
        remote_ip="127.0.0.1",
        local_ip="127.0.0.1",
        process=curl,
        remote=make_remote("127.0.0.1", country=None, asn=None, as_org=None, scope=Scope.LOOPBACK),
    )
    lan = make_flow(
        remote_ip="192.168.1.1",
        local_port=51001,
        process=curl,
        remote=make_remote("192.168.1.1", country=None, asn=None, as_org=None, scope=Scope.PRIVATE),
    )
    nowhere = make_flow(
        remote_ip="203.0.113.9",
        local_port=51002,
        process=curl,
        remote=make_remote("203.0.113.9", country=None, asn=None, as_org=None),
    )
    m.observe(make_snapshot(1, flows=(lo, lan, nowhere)))
    base = {"direction": "received", "process": "curl"}
    assert _value(m, "netwatch_bytes_total", {**base, "scope": "loopback", "country": ""}) == 4200
    assert _value(m, "netwatch_bytes_total", {**base, "scope": "private", "country": ""}) == 4200
    unplaced = {**base, "scope": "global", "country": "unknown"}
    assert _value(m, "netwatch_bytes_total", unplaced) == 4200
    text = generate_latest(m.registry).decode()
    assert 'scope="loopback"' in text
    assert not any('scope="loopback"' in x and 'country="unknown"' in x for x in text.splitlines())


def _busy_metrics() -> Metrics:
    """Metrics after two ticks with every family set: alerts, bytes, drops, a skipped file."""
    m = Metrics()
    curl = make_process("curl")
    flows = (make_flow(process=curl), make_flow(remote_ip="127.0.0.1", local_port=2, process=curl))
    snap = replace(
        make_snapshot(1, flows=flows, alerts=(make_alert(),)),
        counters=Counters(capture_drops=3, queue_drops=1, starts_named=2, starts_missed=1),
    )
    m.observe(
        snap,
        clients=1,
        sink_drops=1,
        client_resyncs=1,
        clients_refused=3,
        flow_log_drops=2,
        notify_drops=4,
    )
    snap2 = replace(snap, seq=2, status=replace(snap.status, skipped=("GeoLite2-ASN.mmdb: bad",)))
    m.observe(snap2, clients=1, sink_drops=2, client_resyncs=1)
    return m


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool not installed (Debian package prometheus)"
)
def test_promtool_check_metrics_is_clean() -> None:
    text = generate_latest(_busy_metrics().registry)
    done = subprocess.run(  # noqa: S603  # promtool from PATH, our own text on stdin
        [shutil.which("promtool") or "promtool", "check", "metrics"],
        input=text,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
    assert done.stdout.strip() == b"" and done.stderr.strip() == b"", done


def test_notification_drops_are_a_running_total() -> None:
    m = Metrics()
    snap = make_snapshot(1)
    m.observe(snap, notify_drops=4)
    m.observe(replace(snap, seq=2), notify_drops=9)
    assert _value(m, "netwatch_notify_drops_total") == 9.0
