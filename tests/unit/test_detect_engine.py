"""The rule engine: suppression lifecycle, windows, policy actions, exclusions, first-seen state."""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from netwatch.detect.engine import RuleEngine, is_netwatch_fetch
from netwatch.detect.loader import check_rule_texts, load_rules
from netwatch.detect.novelty import MemoryFirstSeen
from netwatch.model import Action, AlertState, Direction, Evidence, Policy, Severity, Transport
from netwatch.pipeline.engine import Detector
from tests.builders import T0, make_process
from tests.unit.test_rules_pack import PEERS, flow, inbound, listen

SNI_RULE = """
[[rule]]
id = "test.sni"
title = "SNI seen"
severity = "low"
identifier = ["process.name"]
suppress_for = 600
message = "{process} contacted {name}"
when = { field = "sni", domain = "example.org" }
"""


def _engine(text: str = SNI_RULE, policy: Policy | None = None) -> RuleEngine:
    ruleset, problems = check_rule_texts([("test.toml", text)])
    assert problems == []
    return RuleEngine(ruleset, policy)


def test_rule_engine_is_a_pipeline_detector() -> None:
    detector: Detector = RuleEngine()
    assert detector.evaluate([], T0) == []


def test_repeats_raise_count_on_one_alert() -> None:
    engine = _engine()
    a = flow(sni="www.example.org", remote_ip="198.51.100.1")
    b = flow(sni="api.example.org", remote_ip="198.51.100.2", at=T0 + 10)
    first = engine.evaluate([a], T0 + 1)
    assert [x.count for x in first] == [1]
    assert first[0].message == "curl contacted www.example.org"
    assert first[0].evidence == (Evidence("sni", "www.example.org"),)
    assert first[0].process is not None and first[0].process.name == "curl"
    # The same flow seen again on the next tick is not a new occurrence: nothing changes.
    assert engine.evaluate([a], T0 + 2) == []
    second = engine.evaluate([a, b], T0 + 12)
    assert len(second) == 1
    assert second[0].id == first[0].id
    assert second[0].count == 2
    assert second[0].last_seen == b.flow.last_seen
    assert second[0].first_seen == first[0].first_seen


def test_alert_closes_after_suppress_for_and_reopens_with_new_id() -> None:
    engine = _engine()
    a = flow(sni="www.example.org")
    opened = engine.evaluate([a], T0 + 1)[0]
    closed = engine.evaluate([], T0 + 1 + 601 + 1)
    assert [(c.id, c.state) for c in closed] == [(opened.id, AlertState.CLOSED)]
    later = flow(sni="www.example.org", at=T0 + 2000)
    reopened = engine.evaluate([later], T0 + 2002)
    assert len(reopened) == 1
    assert reopened[0].id != opened.id
    assert reopened[0].count == 1


def test_ids_are_stable_across_runs() -> None:
    a = flow(sni="www.example.org")
    assert _engine().evaluate([a], T0 + 1)[0].id == _engine().evaluate([a], T0 + 1)[0].id


def test_policy_ignore_and_log() -> None:
    a = flow(sni="www.example.org")
    assert _engine(policy=Policy(rules=(("test.sni", Action.IGNORE),))).evaluate([a], T0) == []
    logged = _engine(policy=Policy(rules=(("test.sni", Action.LOG),))).evaluate([a], T0)
    assert len(logged) == 1
    assert logged[0].action is Action.LOG
    # The action is the alert's own field; the tags stay the rule's.
    rule_tags = next(r.tags for r in _engine().rules.rules if r.id == "test.sni")
    assert logged[0].tags == rule_tags
    assert _engine().evaluate([a], T0)[0].action is Action.ALERT


def test_trusted_networks_raise_nothing() -> None:
    policy = Policy(trusted_networks=(ipaddress.ip_network("198.51.100.0/24"),))
    engine = _engine(policy=policy)
    assert engine.evaluate([flow(sni="www.example.org", remote_ip="198.51.100.7")], T0) == []
    assert len(engine.evaluate([flow(sni="www.example.org", remote_ip="203.0.113.7")], T0)) == 1


def test_own_pid_and_lists_update_are_excluded() -> None:
    own = flow(sni="www.example.org")
    engine = RuleEngine(check_rule_texts([("t.toml", SNI_RULE)])[0], own_pids=frozenset({4242}))
    assert engine.evaluate([own], T0) == []
    assert is_netwatch_fetch(
        make_process("python3", cmdline=("python3", "-m", "netwatch", "lists", "update"))
    )
    assert is_netwatch_fetch(
        make_process(
            "netwatch", cmdline=("/usr/local/bin/netwatch", "lists", "update", "--url", "x")
        )
    )
    assert not is_netwatch_fetch(
        make_process("python3", cmdline=("python3", "-m", "netwatch", "lists", "status"))
    )
    assert not is_netwatch_fetch(make_process("curl", cmdline=("curl", "lists", "update")))


def test_relay_window_counts_grow_on_one_alert_and_expire() -> None:
    engine = RuleEngine()
    first = [
        a
        for a in engine.evaluate(
            [listen("vpnserver", 443), *inbound("vpnserver", PEERS[:3])], T0 + 5
        )
        if a.rule_id == "vpngate.relay_mode"
    ]
    assert len(first) == 1
    assert first[0].message == (
        "vpnserver is serving as a VPN Gate relay: 3 strangers from 3 countries (DE, FR, JP) "
        "connected in the last hour"
    )
    assert first[0].count == 3
    assert first[0].severity is Severity.HIGH
    more = inbound("vpnserver", [*PEERS, ("203.0.113.99", "BR")])
    second = [a for a in engine.evaluate(more, T0 + 60) if a.rule_id == "vpngate.relay_mode"]
    assert len(second) == 1
    assert second[0].id == first[0].id
    assert second[0].count == 5
    assert "5 strangers from 5 countries" in second[0].message
    evidence = {e.name: e.value for e in second[0].evidence}
    assert evidence["window.peers"] == "5"
    assert evidence["window.country_list"] == "BR, DE, FR, JP, US"
    # Two hours later the old peers have left the window; two new ones are not enough.
    late = inbound("vpnserver", [("198.51.100.200", "DE"), ("198.51.100.201", "DE")], at=T0 + 7200)
    assert [
        a
        for a in engine.evaluate(late, T0 + 7202)
        if a.rule_id == "vpngate.relay_mode" and a.state is AlertState.OPEN
    ] == []


def test_first_seen_state_survives_a_restart_through_the_store() -> None:
    store = MemoryFirstSeen()
    curl = flow(process="curl")
    first = RuleEngine(load_rules(), first_seen=store).evaluate([curl], T0)
    assert "process.first_connection" in [a.rule_id for a in first]
    again = RuleEngine(load_rules(), first_seen=store).evaluate([curl], T0 + 100)
    assert "process.first_connection" not in [a.rule_id for a in again]
    fresh = RuleEngine(load_rules()).evaluate([curl], T0 + 100)
    assert "process.first_connection" in [a.rule_id for a in fresh]


def test_listening_sockets_do_not_count_as_peers() -> None:
    flows = [listen("vpnserver", p) for p in (443, 992, 1194, 5555)]
    alerts = RuleEngine().evaluate(flows, T0)
    assert "vpngate.relay_mode" not in [a.rule_id for a in alerts]


def test_inbound_direction_required_for_relay_peers() -> None:
    outbound = [
        flow(process="vpnserver", remote_ip=ip, country=cc, direction=Direction.OUTBOUND)
        for ip, cc in PEERS
    ]
    assert "vpngate.relay_mode" not in [a.rule_id for a in RuleEngine().evaluate(outbound, T0)]


LISTENS_RULE = """
[[rule]]
id = "test.listener_talks"
title = "A public listener also talks out"
severity = "low"
identifier = ["process.name"]
message = "{process} listens publicly and talks to {where}"
when = { all = [
    { field = "direction", eq = "outbound" },
    { field = "process.listens", has_glob = "tcp/*" },
] }
"""


def test_process_listens_is_this_ticks_public_listeners_of_the_same_process() -> None:
    engine = _engine(LISTENS_RULE)
    out = flow(process="vpnclient", remote_ip="203.0.113.9")
    assert engine.evaluate([out], T0) == []
    assert engine.evaluate([out, listen("vpnclient", 9930, "127.0.0.1")], T0 + 1) == []
    (alert,) = engine.evaluate([out, listen("vpnclient", 995)], T0 + 2)
    assert Evidence("process.listens", "tcp/995") in alert.evidence


names = st.one_of(
    st.none(), st.text(max_size=30), st.sampled_from(["www.vpngate.net", "DDNS", "x.opengw.net"])
)
flows_strategy = st.builds(
    lambda proc, rip, rport, lport, tr, dr, sni, dns, sent, recv, dur, cc, lab, lists: flow(
        process=proc,
        remote_ip=rip,
        remote_port=rport,
        local_port=lport,
        transport=tr,
        direction=dr,
        sni=sni,
        dns_name=dns,
        bytes_sent=sent,
        bytes_received=recv,
        duration=dur,
        country=cc,
        label=lab,
        lists=lists,
    ),
    st.one_of(st.none(), st.sampled_from(["vpnclient", "vpnserver", "tor", "openvpn", "curl", ""])),
    st.one_of(
        st.none(), st.sampled_from(["203.0.113.7", "2001:db8::9", "127.0.0.1", "219.100.37.1"])
    ),
    st.integers(0, 65535),
    st.integers(0, 65535),
    st.sampled_from(list(Transport)),
    st.sampled_from(list(Direction)),
    names,
    names,
    st.one_of(st.none(), st.integers(0, 10**9)),
    st.one_of(st.none(), st.integers(0, 10**9)),
    st.floats(0, 1e6),
    st.one_of(st.none(), st.sampled_from(["RU", "US", "JP", "??"])),
    st.one_of(
        st.none(),
        st.tuples(
            st.sampled_from(["openvpn", "softether", "tor", "vpngate", "tls"]),
            st.booleans(),
            st.lists(st.tuples(st.text(max_size=8), st.text(max_size=20)), max_size=3).map(tuple),
        ),
    ),
    st.lists(st.sampled_from(["vpngate", "tor", "other"]), max_size=2).map(tuple),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(flows_strategy, max_size=12), st.floats(0, 7200))
def test_engine_never_raises_on_any_flows(flows: list[object], later: float) -> None:
    engine = RuleEngine()
    first = engine.evaluate(flows, T0 + 10)  # type: ignore[arg-type]
    second = engine.evaluate(flows, T0 + 10 + later)  # type: ignore[arg-type]
    for alert in [*first, *second]:
        assert alert.message and "\n" not in alert.message
        assert alert.count >= 1
