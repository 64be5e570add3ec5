"""The daemon's snapshot encoder: the codec's exact bytes, with unchanged flows encoded once."""

from __future__ import annotations

from dataclasses import replace

from netwatch import codec
from netwatch.daemon.encoding import SnapshotEncoder
from netwatch.flows.serials import fresh_rev, new_serial
from netwatch.model import EnrichedFlow, Label
from tests.builders import make_alert, make_flow, make_label, make_process, make_snapshot


def _numbered(ef: EnrichedFlow) -> EnrichedFlow:
    """Numbered as the engine numbers a new conversation (docs/architecture.md section 4)."""
    flow = replace(ef.flow, serial=new_serial(), rev_facts=fresh_rev(), rev_traffic=fresh_rev())
    return replace(ef, flow=flow, rev_remote=fresh_rev())


def _flows() -> tuple:  # type: ignore[type-arg]  # a tuple of EnrichedFlow, test-local
    return tuple(
        map(
            _numbered,
            (
                make_flow(process=make_process(name="vpnclient", cmdline=("vpnclient", "ü"))),
                make_flow(remote_ip=None, with_remote=False, local_port=443),
                make_flow(remote_ip="2001:db8::1", label=make_label(), sni="DDNS"),
            ),
        )
    )


def test_output_is_byte_for_byte_the_codec_line() -> None:
    enc = SnapshotEncoder()
    flows = _flows()
    for snap in (
        make_snapshot(flows=flows, alerts=(make_alert(),)),
        make_snapshot(seq=2, flows=flows),
        make_snapshot(seq=3),
    ):
        assert enc.encode(snap) == codec.dumps(snap)


def test_unchanged_flows_are_not_encoded_again() -> None:
    enc = SnapshotEncoder()
    flows = _flows()
    enc.encode(make_snapshot(flows=flows))
    assert enc.encoded == 3
    assert enc.encode(make_snapshot(seq=2, flows=flows)) == codec.dumps(
        make_snapshot(seq=2, flows=flows)
    )
    assert enc.encoded == 0


def test_a_changed_flow_is_encoded_from_its_new_content() -> None:
    enc = SnapshotEncoder()
    flows = _flows()
    enc.encode(make_snapshot(flows=flows))
    moved = replace(
        flows[0], flow=replace(flows[0].flow, bytes_sent=987654, rev_traffic=fresh_rev())
    )
    relabelled = replace(
        flows[2],
        flow=replace(
            flows[2].flow, label=Label("wireguard", "vpn", vpn=True), rev_facts=fresh_rev()
        ),
    )
    snap = make_snapshot(seq=2, flows=(moved, flows[1], relabelled))
    line = enc.encode(snap)
    assert line == codec.dumps(snap)
    assert enc.encoded == 2
    assert "987654" in line and '"app":"wireguard"' in line


def test_a_greeting_does_not_evict_the_current_texts() -> None:
    enc = SnapshotEncoder()
    flows = _flows()
    enc.encode(make_snapshot(flows=flows))
    other = make_snapshot(seq=9, flows=(make_flow(remote_port=22),), alerts=(make_alert(),))
    assert enc.encode(other, remember=False) == codec.dumps(other)
    enc.encode(make_snapshot(seq=2, flows=flows))
    assert enc.encoded == 0


def test_unnumbered_flows_are_encoded_every_time() -> None:
    """A flow without a serial (built by hand, read from a file) is never taken for another."""
    enc = SnapshotEncoder()
    flows = (make_flow(local_port=1), make_flow(local_port=2))
    enc.encode(make_snapshot(flows=flows))
    snap = make_snapshot(seq=2, flows=(make_flow(local_port=3), make_flow(local_port=4)))
    assert enc.encode(snap) == codec.dumps(snap)
    assert enc.encoded == 2
