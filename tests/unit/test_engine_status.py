"""The engine's status line: what the sampler sees, whether capture runs, which GeoIP data."""

from __future__ import annotations

from collections.abc import Sequence

from netwatch.enrich.enricher import build_enricher
from netwatch.model import Counters, Flow, SocketTable, SourceStatus
from netwatch.pipeline import Engine
from tests.clock import FakeClock


class RecordedSockets:
    """A socket source that replays one recorded (here: empty) table; the OS stays outside."""

    def __init__(self, status: SourceStatus) -> None:
        self._status = status

    def sample(self) -> SocketTable:
        return SocketTable(taken_at=0.0, entries=())

    def status(self) -> SourceStatus:
        return self._status


class NoPackets:
    """A packet stage that saw nothing: only its presence matters to the status."""

    def flows(self, table: SocketTable, now: float, serials: object = None) -> Sequence[Flow]:
        return ()

    def counters(self) -> Counters:
        return Counters(packets=0)


def test_status_says_capture_is_on_only_when_a_packet_stage_runs() -> None:
    base = SourceStatus(privileged=True, capture=False)
    on = Engine(RecordedSockets(base), FakeClock(), packets=NoPackets()).tick().status
    off = Engine(RecordedSockets(base), FakeClock()).tick().status
    assert on.capture is True
    assert on.capture_reason is None
    assert off.capture is False
    assert off.capture_reason == "packet capture is off"


def test_a_reason_from_the_sampler_is_kept_when_capture_is_off() -> None:
    base = SourceStatus(capture_reason="packet capture needs CAP_NET_RAW")
    status = Engine(RecordedSockets(base), FakeClock()).tick().status
    assert status.capture_reason == "packet capture needs CAP_NET_RAW"


def test_status_names_the_geoip_data_in_use() -> None:
    enricher = build_enricher(lists=())
    try:
        status = Engine(RecordedSockets(SourceStatus()), FakeClock(), enricher=enricher).tick()
    finally:
        enricher.close()
    assert status.status.geoip is not None
    assert "netwatch-country-asn.mmdb" in status.status.geoip
