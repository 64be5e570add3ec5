"""The change contract (docs/architecture.md, section 4): serials and revisions of flows.

Every flow the engine hands on has a serial for its conversation, stable while the
conversation stays in the snapshot, and revisions that move exactly when their part
changes: `rev_traffic` with counters, `rev_facts` with state, process, label and the like,
`rev_remote` with the enrichment answer. The socket source and the capture are the OS seams,
so scripted socket tables and a list of packets stand in for them; the flow stages, the
merge, the enricher and the engine are the real ones.
"""

from __future__ import annotations

import ipaddress
from dataclasses import replace

from netwatch.enrich.enricher import Enricher
from netwatch.enrich.geo import GeoLookup
from netwatch.flows.table import FlowOwner, FlowTable
from netwatch.model import (
    Attribution,
    Direction,
    Endpoint,
    EnrichedFlow,
    FlowKey,
    Label,
    PacketFacts,
    PacketMeta,
    SocketEntry,
    Transport,
)
from netwatch.pipeline import Engine
from netwatch.pipeline.capture_flows import CaptureFlows
from netwatch.pipeline.offline import OfflineAnalysis
from netwatch.sources.capture import CaptureStats
from tests.builders import make_process
from tests.clock import FakeClock
from tests.unit.test_engine_reuse import ScriptedSockets, SlowOwners

HOST = ipaddress.ip_address("10.0.0.2")
PEER = ipaddress.ip_address("8.8.8.8")


class QueuedPackets:
    """Stands in for `LiveCapture`: hands out the packets it was given."""

    def __init__(self) -> None:
        self.queue: list[PacketMeta] = []

    def packets(self, limit: int | None = None) -> list[PacketMeta]:
        out, self.queue = self.queue, []
        return out

    def stats(self) -> CaptureStats:
        return CaptureStats(frames=0, kernel_drops=0, queue_drops=0, queued=0)

    def stop(self) -> None:
        return None


def _entry(rport: int = 443, inode: int = 1, **changes: object) -> SocketEntry:
    entry = SocketEntry(
        key=FlowKey(Transport.TCP, Endpoint(HOST, 40000 + rport % 1000), Endpoint(PEER, rport)),
        state="ESTABLISHED",
        direction=Direction.UNKNOWN,
        process=make_process(),
        inode=inode,
        bytes_sent=100,
        bytes_received=10,
    )
    return replace(entry, **changes)  # type: ignore[arg-type]


def _engine(
    packets: CaptureFlows | None = None,
) -> tuple[Engine, ScriptedSockets, FakeClock, SlowOwners]:
    sockets, clock, owners = ScriptedSockets(), FakeClock(), SlowOwners()
    enricher = Enricher(GeoLookup(()), rdap=owners)
    return Engine(sockets, clock, enricher=enricher, packets=packets), sockets, clock, owners


def _versions(flows: tuple[EnrichedFlow, ...]) -> dict[FlowKey, tuple[int, int, int, int]]:
    return {ef.flow.key: ef.version for ef in flows}


def _tick(engine: Engine, clock: FakeClock) -> dict[FlowKey, tuple[int, int, int, int]]:
    clock.advance(1)
    return _versions(engine.tick().flows)


def test_every_flow_is_numbered_and_an_idle_tick_keeps_every_version() -> None:
    engine, sockets, clock, _ = _engine()
    # New but equal entry objects each tick, as a source without a record cache makes.
    sockets.entries = (_entry(443, 1), _entry(80, 2))
    first = _tick(engine, clock)
    assert all(serial and facts and traffic and remote for serial, facts, traffic, remote in
               first.values())  # fmt: skip
    assert len({v[0] for v in first.values()}) == 2
    sockets.entries = (_entry(443, 1), _entry(80, 2))
    assert _tick(engine, clock) == first
    assert _tick(engine, clock) == first


def test_moved_counters_move_only_rev_traffic() -> None:
    engine, sockets, clock, _ = _engine()
    a, b = _entry(443, 1), _entry(80, 2)
    sockets.entries = (a, b)
    first = _tick(engine, clock)
    sockets.entries = (a, replace(b, bytes_sent=5000))
    second = _tick(engine, clock)
    assert second[a.key] == first[a.key]
    s0, f0, t0, r0 = first[b.key]
    s1, f1, t1, r1 = second[b.key]
    assert (s1, f1, r1) == (s0, f0, r0) and t1 > t0
    assert _tick(engine, clock) == second


def test_state_process_and_label_changes_move_rev_facts() -> None:
    engine, sockets, clock, _ = _engine()
    a = _entry(443, 1)
    sockets.entries = (a,)
    versions = [_tick(engine, clock)[a.key]]
    sockets.entries = (replace(a, state="CLOSE_WAIT"),)
    versions.append(_tick(engine, clock)[a.key])
    sockets.entries = (replace(a, state="CLOSE_WAIT", process=make_process("curl", pid=9)),)
    versions.append(_tick(engine, clock)[a.key])
    serials = {v[0] for v in versions}
    facts = [v[1] for v in versions]
    assert len(serials) == 1
    assert facts[0] < facts[1] < facts[2]
    assert len({(v[2], v[3]) for v in versions}) == 1  # traffic and answer did not change
    # A label found on a packet flow without a new packet: only rev_facts moves.
    table = FlowTable()
    state = table.ingest(
        PacketMeta(
            1.0, Transport.UDP, Endpoint(HOST, 5000), Endpoint(PEER, 1194), 80, b"x", ip_proto=17
        )  # fmt: skip
    )
    before = state.to_flow()
    table.fold(state, PacketFacts(label=Label("openvpn", "vpn", vpn=True)))
    after = state.to_flow()
    assert after.label is not None and after.serial == before.serial != 0
    assert after.rev_facts > before.rev_facts and after.rev_traffic == before.rev_traffic
    FlowTable.own(state, FlowOwner(make_process(), Attribution.SOCKET, True))
    owned = state.to_flow()
    assert owned.rev_facts > after.rev_facts and owned.rev_traffic == after.rev_traffic
    assert state.to_flow() is owned  # nothing new since: the same flow, the same numbers


def test_a_changed_enrichment_answer_moves_only_rev_remote() -> None:
    engine, sockets, clock, owners = _engine()
    a = _entry(443, 1)
    sockets.entries = (a,)
    pending = _tick(engine, clock)[a.key]
    assert _tick(engine, clock)[a.key] == pending
    owners.name = "Example Net"  # the background RDAP lookup finished
    named = _tick(engine, clock)[a.key]
    assert named[:3] == pending[:3] and named[3] > pending[3]
    assert _tick(engine, clock)[a.key] == named


def test_a_conversation_that_leaves_the_snapshot_comes_back_as_a_new_serial() -> None:
    """Documented choice: a serial names a conversation while it stays in the snapshot; a
    key that left (even for one tick) is forgotten, so the same key later is a new serial
    (a client that saw the serial removed never sees it again)."""
    engine, sockets, clock, _ = _engine()
    a, b = _entry(443, 1), _entry(80, 2)
    sockets.entries = (a, b)
    first = _tick(engine, clock)
    sockets.entries = (b,)
    gone = _tick(engine, clock)
    assert gone == {b.key: first[b.key]}
    sockets.entries = (a, b)
    back = _tick(engine, clock)
    assert back[b.key] == first[b.key]
    assert back[a.key][0] != first[a.key][0]
    assert back[a.key][0] not in {v[0] for v in first.values()}


def test_sockets_that_share_a_key_get_their_own_serials() -> None:
    """Two sockets listening on one port (SO_REUSEPORT) are two flows, two serials."""
    engine, sockets, clock, _ = _engine()
    key = FlowKey(Transport.UDP, Endpoint(ipaddress.ip_address("0.0.0.0"), 5353), None)
    sockets.entries = (
        SocketEntry(key, None, Direction.UNKNOWN, make_process("a", pid=1), inode=11),
        SocketEntry(key, None, Direction.UNKNOWN, make_process("b", pid=2), inode=12),
    )
    clock.advance(1)
    first = [ef.version for ef in engine.tick().flows]
    assert first[0][0] != first[1][0]
    clock.advance(1)
    assert [ef.version for ef in engine.tick().flows] == first


def test_the_socket_and_packet_views_of_one_conversation_share_one_serial() -> None:
    cap = QueuedPackets()
    packets = CaptureFlows(cap, addresses=lambda: frozenset({HOST}))  # type: ignore[arg-type]
    engine, sockets, clock, _ = _engine(packets)
    me, them = Endpoint(HOST, 40443), Endpoint(PEER, 443)
    sock = SocketEntry(
        FlowKey(Transport.UDP, me, them), "ESTABLISHED", Direction.UNKNOWN, make_process(),
        inode=5,
    )  # fmt: skip
    sockets.entries = (sock,)
    alone = _tick(engine, clock)[sock.key]  # the socket only: no packet yet
    t = clock.now()
    cap.queue += [
        PacketMeta(t, Transport.UDP, me, them, 100, b"x", ip_proto=17),
        PacketMeta(t + 0.1, Transport.UDP, them, me, 100, b"y", ip_proto=17),
    ]
    clock.advance(1)
    (merged,) = engine.tick().flows
    assert merged.flow.key == sock.key and merged.flow.packets_sent == 1
    assert merged.version[0] == alone[0]
    assert merged.flow.process == sock.process
    idle = _tick(engine, clock)
    assert idle == {sock.key: merged.version}
    cap.queue.append(PacketMeta(clock.now(), Transport.UDP, me, them, 100, b"z", ip_proto=17))
    moved = _tick(engine, clock)[sock.key]
    assert moved[0] == alone[0] and moved[1] == merged.version[1]
    assert moved[2] > merged.version[2]


def test_offline_analysis_numbers_every_flow() -> None:
    analysis = OfflineAnalysis()
    packets = [
        PacketMeta(
            1.0 + i,
            Transport.UDP,
            Endpoint(HOST, 5000 + i),
            Endpoint(PEER, 53),
            80,
            b"q",
            ip_proto=17,
        )  # fmt: skip
        for i in range(3)
    ]
    flows = list(analysis.flows(packets))
    assert len(flows) == 3
    assert all(ef.flow.serial and ef.flow.rev_facts and ef.flow.rev_traffic for ef in flows)
    assert len({ef.flow.serial for ef in flows}) == 3
