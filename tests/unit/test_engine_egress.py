"""Without capture, socket flows learn where they leave from a route lookup (issue 15).

The route lookup is the OS seam (`sources.routes`), so a table of routes stands in for it;
the socket flows, the engine and the leak rules are the real ones.
"""

from __future__ import annotations

from dataclasses import replace

from netwatch.detect.engine import RuleEngine
from netwatch.detect.loader import load_rules
from netwatch.enrich.enricher import Enricher
from netwatch.enrich.geo import GeoLookup
from netwatch.model import IPAddress, Policy, TunnelPolicy
from netwatch.pipeline import Engine
from tests.clock import FakeClock
from tests.unit.test_engine_reuse import ScriptedSockets, _entry


class Routes:
    """Where the kernel would route each address; counts the questions."""

    def __init__(self) -> None:
        self.by: dict[str, str] = {}
        self.asked: list[str] = []

    def egress(self, ip: IPAddress) -> str | None:
        self.asked.append(str(ip))
        return self.by.get(str(ip), "eth0")


def test_a_new_socket_gets_the_routed_interface_and_an_unchanged_one_is_not_asked_again() -> None:
    sockets, routes = ScriptedSockets(), Routes()
    engine = Engine(sockets, FakeClock(), egress=routes.egress)
    sockets.entries = (replace(_entry(443, 1), stamp=5),)  # the sampler's stamp: unchanged
    (ef,) = engine.tick().flows
    assert (ef.flow.interface, ef.flow.egress_by) == ("eth0", "route")
    assert routes.asked == ["8.8.8.8"]
    engine.tick()
    assert routes.asked == ["8.8.8.8"]  # unchanged socket: last tick's flow

    routes.by["8.8.8.8"] = "wg0"  # the tunnel came up; the socket moved bytes
    sockets.entries = (replace(_entry(443, 1, sent=900), stamp=6),)
    (ef2,) = engine.tick().flows
    assert (ef2.flow.interface, ef2.flow.egress_by) == ("wg0", "route")
    assert ef2.flow.serial == ef.flow.serial and ef2.flow.rev_facts != ef.flow.rev_facts


def test_with_capture_the_engine_does_not_route() -> None:
    class NoPackets:
        def flows(self, table, now, serials=None):  # type: ignore[no-untyped-def]
            return []

        def counters(self):  # type: ignore[no-untyped-def]
            from netwatch.model import Counters

            return Counters()

        def close(self) -> None: ...

        def active(self):  # type: ignore[no-untyped-def]
            return []

    sockets, routes = ScriptedSockets(), Routes()
    engine = Engine(sockets, FakeClock(), packets=NoPackets(), egress=routes.egress)  # type: ignore[arg-type]
    sockets.entries = (_entry(443, 1),)
    (ef,) = engine.tick().flows
    assert ef.flow.interface is None and routes.asked == []


def test_a_routed_leak_is_reported_and_says_it_was_routed() -> None:
    sockets, routes = ScriptedSockets(), Routes()
    policy = Policy(tunnel=TunnelPolicy(required=True))
    engine = Engine(
        sockets,
        FakeClock(),
        enricher=Enricher(GeoLookup(())),
        detector=RuleEngine(load_rules(), policy),
        egress=routes.egress,
    )
    sockets.entries = (_entry(443, 1),)
    alerts = [a for a in engine.tick().alerts if a.rule_id == "vpn.leak"]
    assert alerts, "a socket routed by eth0 under a required tunnel is a leak"
    evidence = {e.name: e.value for e in alerts[0].evidence}
    assert evidence["interface"] == "eth0" and evidence["egress_by"] == "route"
