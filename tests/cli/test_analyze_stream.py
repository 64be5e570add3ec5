"""`analyze` streams: flows leave as they finish, and memory follows live flows, not file size."""

from __future__ import annotations

from collections.abc import Iterator

from netwatch.model import Endpoint, PacketMeta, Transport, parse_ip
from netwatch.pipeline.offline import OfflineAnalysis

HOST = parse_ip("192.0.2.1")
PEER = parse_ip("198.51.100.9")


def _short_flows(n: int, gap: float) -> Iterator[PacketMeta]:
    """`n` two-packet UDP conversations, one every `gap` seconds of capture time."""
    for i in range(n):
        a, b = Endpoint(HOST, 10000 + i % 50000), Endpoint(PEER, 5000)
        ts = 1000.0 + i * gap
        yield PacketMeta(ts, Transport.UDP, a, b, 60, b"q", ip_proto=17)
        yield PacketMeta(ts + 0.001, Transport.UDP, b, a, 80, b"r", ip_proto=17)


def test_live_flows_stay_bounded_while_the_file_grows() -> None:
    run = OfflineAnalysis(idle_timeout=5.0)
    peak = 0

    def watched() -> Iterator[PacketMeta]:
        nonlocal peak
        for pkt in _short_flows(20_000, 0.5):
            peak = max(peak, len(run.table))
            yield pkt

    emitted = 0
    first_out_at = None
    for n, ef in enumerate(run.flows(watched())):
        emitted += 1
        if first_out_at is None:
            first_out_at = n
            # The first flow is out long before the file is read: it streams.
            assert ef.flow.first_seen is not None and ef.flow.first_seen < 1010
    assert emitted == 20_000
    assert run.stats.packets == 40_000
    # 5 s idle at one new flow per 0.5 s: about 12 live flows (plus one tick of slack).
    assert peak <= 16


def test_every_flow_is_oriented_and_counted() -> None:
    run = OfflineAnalysis(idle_timeout=5.0)
    flows = list(run.flows(_short_flows(10, 10.0)))
    assert len(flows) == 10
    for ef in flows:
        f = ef.flow
        assert f.key.local.ip == HOST and f.direction.value == "outbound"
        assert (f.packets_sent, f.packets_received, f.bytes_sent, f.bytes_received) == (
            1,
            1,
            60,
            80,
        )
