"""Prometheus metrics: values from snapshots, bounded labels, served on localhost."""

from __future__ import annotations

import socket
import urllib.request
from dataclasses import replace

from prometheus_client import generate_latest

from netwatch.daemon.metrics import MAX_LABELS, Metrics
from netwatch.model import Counters, NamedShare
from tests.builders import make_alert, make_flow, make_process, make_snapshot


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
    assert _value(m, "netwatch_connection_starts_named") == 5
    assert _value(m, "netwatch_connection_starts_missed") == 1

    f1b = make_flow(process=curl, bytes_sent=150, bytes_received=1000)
    m.observe(make_snapshot(2, flows=(f1b,)), clients=2)
    sent = {"direction": "sent", "process": "curl", "country": "RU"}
    assert _value(m, "netwatch_bytes_total", sent) == 150
    recv = {**sent, "direction": "received"}
    assert _value(m, "netwatch_bytes_total", recv) == 1000
    rule = {"rule": "vpngate.list_fetch", "severity": "medium"}
    assert _value(m, "netwatch_alerts_total", rule) == 1
    assert _value(m, "netwatch_capture_drops") == 0  # second snapshot had default counters
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


def test_missed_starts_by_cause_are_counters_and_the_share_is_a_gauge_per_owner() -> None:
    m = Metrics()
    c = Counters(starts_missed=5, starts_missed_budget=3, starts_missed_gone=2,
                 share=NamedShare(bytes_known=900, bytes_unknown=100, flows_known=9,
                                  flows_guessed=1))  # fmt: skip
    m.observe(replace(make_snapshot(1), counters=c))
    m.observe(replace(make_snapshot(2), counters=replace(c, starts_missed_budget=7)))
    cause = "netwatch_connection_starts_missed_by_cause_total"
    assert _value(m, cause, {"cause": "budget"}) == 7
    assert _value(m, cause, {"cause": "gone"}) == 2
    assert _value(m, cause, {"cause": "queue"}) in (None, 0)
    # The watcher restarted (the collector came back): its totals count from zero.
    m.observe(replace(make_snapshot(3), counters=replace(c, starts_missed_budget=1)))
    assert _value(m, cause, {"cause": "budget"}) == 8
    assert _value(m, "netwatch_last_minute_bytes", {"owner": "known"}) == 900
    assert _value(m, "netwatch_last_minute_bytes", {"owner": "unknown"}) == 100
    assert _value(m, "netwatch_last_minute_flows", {"owner": "guessed"}) == 1
