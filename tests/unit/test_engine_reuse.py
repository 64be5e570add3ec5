"""The engine keeps last tick's flows (and their versions) for unchanged sockets, only for those."""

from __future__ import annotations

import ipaddress
from dataclasses import replace

from netwatch.enrich.enricher import Enricher
from netwatch.enrich.geo import GeoLookup
from netwatch.model import (
    Direction,
    Endpoint,
    EnrichedFlow,
    Flow,
    FlowKey,
    IPAddress,
    Owner,
    SocketEntry,
    SocketTable,
    SourceStatus,
    Transport,
)
from netwatch.pipeline import Engine
from tests.builders import make_process
from tests.clock import FakeClock


class ScriptedSockets:
    """A socket source replaying tables the test hands it (the OS stays outside)."""

    def __init__(self) -> None:
        self.entries: tuple[SocketEntry, ...] = ()

    def sample(self) -> SocketTable:
        return SocketTable(taken_at=0.0, entries=self.entries)

    def status(self) -> SourceStatus:
        return SourceStatus()


class SlowOwners:
    """An RDAP resolver stand-in (the RDAP server is outside): pending until told otherwise."""

    def __init__(self) -> None:
        self.name: str | None = None

    def owner(self, ip: IPAddress) -> Owner:
        if self.name is None:
            return Owner(status="pending")
        return Owner(status="ok", name=self.name)

    def wait(self, ips: object, timeout: float) -> None:
        return None

    def close(self) -> None:
        return None


def _entry(rport: int, inode: int, sent: int = 100) -> SocketEntry:
    return SocketEntry(
        key=FlowKey(
            Transport.TCP,
            Endpoint(ipaddress.ip_address("10.0.0.2"), 40000 + rport),
            Endpoint(ipaddress.ip_address("8.8.8.8"), rport),
        ),
        state="ESTABLISHED",
        direction=Direction.OUTBOUND,
        process=make_process(),
        inode=inode,
        bytes_sent=sent,
        bytes_received=10,
    )


def _engine() -> tuple[Engine, ScriptedSockets, FakeClock, SlowOwners]:
    sockets, clock, owners = ScriptedSockets(), FakeClock(), SlowOwners()
    engine = Engine(sockets, clock, enricher=Enricher(GeoLookup(()), rdap=owners))
    return engine, sockets, clock, owners


def test_an_unchanged_socket_keeps_its_flow_objects_and_first_seen() -> None:
    engine, sockets, clock, _ = _engine()
    a, b = _entry(443, 1), _entry(80, 2)
    sockets.entries = (a, b)
    t0 = clock.now()
    first = engine.tick().flows
    clock.advance(1)
    b2 = replace(b, bytes_sent=5000)  # counters moved: the sampler hands a new entry
    sockets.entries = (a, b2)
    second = engine.tick().flows
    assert second[0].version == first[0].version
    assert second[1].version != first[1].version
    assert second[1].flow.bytes_sent == 5000
    assert first[1].flow.bytes_sent == 100
    assert [ef.flow.first_seen for ef in second] == [t0, t0]
    assert all(ef.flow.last_seen is None for ef in second)


def test_an_equal_but_new_entry_is_rebuilt_from_its_own_content() -> None:
    engine, sockets, clock, _ = _engine()
    a = _entry(443, 1)
    sockets.entries = (a,)
    first = engine.tick().flows[0]
    clock.advance(1)
    moved = replace(a, state="CLOSE_WAIT")
    sockets.entries = (moved,)
    second = engine.tick().flows[0]
    assert second.version[1] != first.version[1]
    assert second.flow.state == "CLOSE_WAIT"


def test_a_new_socket_on_the_same_key_gets_a_new_first_seen() -> None:
    engine, sockets, clock, _ = _engine()
    sockets.entries = (_entry(443, 1),)
    engine.tick()
    clock.advance(5)
    sockets.entries = (_entry(443, 2),)  # closed and reopened: another inode
    assert engine.tick().flows[0].flow.first_seen == clock.now()


def test_a_changed_enrichment_answer_replaces_the_enriched_flow() -> None:
    engine, sockets, clock, owners = _engine()
    sockets.entries = (_entry(443, 1),)
    first = engine.tick().flows[0]
    clock.advance(1)
    same = engine.tick().flows[0]
    owners.name = "Example Net"  # the background RDAP lookup finished
    clock.advance(1)
    resolved = engine.tick().flows[0]
    assert same.version == first.version
    assert resolved.version[:3] == first.version[:3] and resolved.rev_remote != first.rev_remote
    assert first.remote is not None and first.remote.owner is not None
    assert first.remote.owner.status == "pending"
    assert resolved.remote is not None and resolved.remote.owner is not None
    assert resolved.remote.owner.name == "Example Net"


class CountingEnricher(Enricher):
    """The real enricher, counting how often the engine asks it."""

    calls = 0

    def enrich(self, flow: Flow) -> EnrichedFlow:
        self.calls += 1
        return super().enrich(flow)


def test_a_stable_enricher_is_not_asked_again_about_unchanged_flows() -> None:
    sockets, clock = ScriptedSockets(), FakeClock()
    enricher = CountingEnricher(GeoLookup(()), lists=())
    assert enricher.stable
    engine = Engine(sockets, clock, enricher=enricher)
    a, b = _entry(443, 1), _entry(80, 2)
    sockets.entries = (a, b)
    first = engine.tick().flows
    sockets.entries = (a, replace(b, bytes_received=77))
    second = engine.tick().flows
    assert enricher.calls == 3
    assert second[0].version == first[0].version
    assert second[1].flow.bytes_received == 77
    assert second[1].remote == first[1].remote


def test_a_replaced_enricher_answers_for_every_flow_again() -> None:
    sockets, clock = ScriptedSockets(), FakeClock()
    engine = Engine(sockets, clock, enricher=Enricher(GeoLookup(()), lists=()))
    sockets.entries = (_entry(443, 1),)
    first = engine.tick().flows[0]
    owners = SlowOwners()
    owners.name = "Example Net"
    engine.enricher = Enricher(GeoLookup(()), rdap=owners)
    again = engine.tick().flows[0]
    assert again.version[:3] == first.version[:3] and again.rev_remote != first.rev_remote
    assert again.remote is not None and again.remote.owner is not None
    assert again.remote.owner.name == "Example Net"


def test_directions_are_judged_in_flows_and_rejudged_only_when_listeners_change() -> None:
    """The sampler's entries say nothing of who initiated; the flows stage judges it from the
    table's listeners, keeps last tick's flow for an unchanged socket, and replaces it only
    when a listener opened or closed changes its direction."""
    engine, sockets, _clock, _owners = _engine()
    here = Endpoint(ipaddress.ip_address("10.0.0.2"), 22)
    peer = Endpoint(ipaddress.ip_address("10.0.0.9"), 50000)
    # Stamped as the sampler stamps them: an unchanged socket keeps its entry's stamp.
    listener = SocketEntry(
        FlowKey(Transport.TCP, here, None), "LISTEN", Direction.UNKNOWN, stamp=1001
    )
    accepted = SocketEntry(
        FlowKey(Transport.TCP, here, peer), "ESTABLISHED", Direction.UNKNOWN, stamp=1002
    )
    out = replace(_entry(443, inode=7), direction=Direction.UNKNOWN, stamp=1003)
    sockets.entries = (listener, accepted, out)
    first = {f.flow.key: f.flow for f in engine.tick().flows}
    assert first[accepted.key].direction is Direction.INBOUND
    assert first[out.key].direction is Direction.OUTBOUND
    assert first[listener.key].direction is Direction.LISTEN
    sockets.entries = (accepted, out)  # the listener closed: the same entries otherwise
    second = {f.flow.key: f.flow for f in engine.tick().flows}
    assert second[accepted.key].direction is Direction.OUTBOUND
    assert second[accepted.key].first_seen == first[accepted.key].first_seen
    assert second[accepted.key].rev_facts != first[accepted.key].rev_facts
    assert _v(second[out.key]) == _v(first[out.key])  # its direction did not change
    assert engine._socket_flows.reused == 2
    third = {f.flow.key: f.flow for f in engine.tick().flows}
    assert _v(third[accepted.key]) == _v(second[accepted.key])
    # A DNS lookup's unconnected UDP socket on another port: nothing else is re-judged.
    lookup = Endpoint(ipaddress.ip_address("10.0.0.2"), 53123)
    dns = SocketEntry(FlowKey(Transport.UDP, lookup, None), None, Direction.UNKNOWN, stamp=1004)
    sockets.entries = (accepted, out, dns)
    fourth = {f.flow.key: f.flow for f in engine.tick().flows}
    assert fourth[dns.key].direction is Direction.LISTEN
    assert _v(fourth[accepted.key]) == _v(third[accepted.key])
    assert _v(fourth[out.key]) == _v(third[out.key])
    assert engine._socket_flows.reused == 2


def _v(flow: Flow) -> tuple[int, int, int]:
    return (flow.serial, flow.rev_facts, flow.rev_traffic)
