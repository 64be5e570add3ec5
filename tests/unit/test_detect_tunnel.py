"""`vpn.tunnel_down` over several ticks: what counts as sent in the clear, and when it ends."""

from __future__ import annotations

from netwatch.detect.engine import RuleEngine
from netwatch.detect.loader import load_rules
from netwatch.model import Alert, Policy, TunnelPolicy
from tests.builders import T0
from tests.unit.test_rules_pack import TUNNEL_GONE, TUNNEL_UP, by, later

POLICY = Policy(tunnel=TunnelPolicy(required=False))


def _down(alerts: list[Alert]) -> list[Alert]:
    return [a for a in alerts if a.rule_id == "vpn.tunnel_down"]


def _evidence(a: Alert) -> dict[str, str]:
    return {e.name: e.value for e in a.evidence}


def test_only_bytes_sent_after_the_tunnel_went_count_and_they_grow_until_it_is_back() -> None:
    engine = RuleEngine(load_rules(), POLICY)
    split = later(by("eth0", remote_ip="198.51.100.70"), 1000)
    assert not _down(engine.evaluate([split], T0 + 10, TUNNEL_UP))

    (a,) = _down(engine.evaluate([later(split, 5000)], T0 + 20, TUNNEL_GONE))
    assert _evidence(a)["sent_in_clear"] == "4000"
    assert _evidence(a)["tunnel_down_since"].startswith("20")
    assert a.flow_key == split.flow.key

    (b,) = _down(engine.evaluate([later(split, 9000)], T0 + 30, TUNNEL_GONE))
    assert b.id == a.id and b.count == 2
    assert _evidence(b)["sent_in_clear"] == "8000"

    assert not _down(engine.evaluate([later(split, 9500)], T0 + 40, TUNNEL_UP))


def test_a_flow_first_seen_after_the_tunnel_went_sent_everything_in_the_clear() -> None:
    engine = RuleEngine(load_rules(), POLICY)
    engine.evaluate([by("wg0", remote_ip="198.51.100.71")], T0 + 10, TUNNEL_UP)
    new = later(by("eth0", remote_ip="198.51.100.72", at=T0 + 15), 700)
    (a,) = _down(engine.evaluate([new], T0 + 20, TUNNEL_GONE))
    assert _evidence(a)["sent_in_clear"] == "700"


def test_a_quiet_flow_is_not_reported() -> None:
    engine = RuleEngine(load_rules(), POLICY)
    split = later(by("eth0", remote_ip="198.51.100.70"), 1000)
    engine.evaluate([split], T0 + 10, TUNNEL_UP)
    assert not _down(engine.evaluate([split], T0 + 20, TUNNEL_GONE))
