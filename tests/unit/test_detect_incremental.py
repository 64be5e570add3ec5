"""Incremental detection: flows with last tick's version skip their conditions, nothing else
changes.

Each test runs two rule engines side by side on the same ticks: one is handed the flows
numbered as the live engine numbers them (docs/architecture.md section 4: a serial per
conversation, revisions that move only with the parts that changed), so it reuses last
tick's matches; the other unnumbered copies every tick (so it evaluates every condition, as
before the cache). Their alerts must be equal on every tick, and the first must really have
skipped the unchanged flows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from netwatch.detect.engine import RuleEngine
from netwatch.detect.loader import load_rules
from netwatch.flows.serials import fresh_rev, new_serial, revisions
from netwatch.model import Alert, Direction, EnrichedFlow, FlowKey, HostFacts
from netwatch.model.versions import ChangeTracker
from tests.builders import T0, make_process
from tests.unit.test_detect_engine import flows_strategy
from tests.unit.test_rules_pack import (
    OPTIONAL_TUNNEL,
    PEERS,
    PLAIN_HOST,
    VPNGATE_HOST,
    by,
    flow,
    inbound,
    listen,
)


def renumbered(ef: EnrichedFlow) -> EnrichedFlow:
    """A copy with a serial and revisions never seen before: never taken for last tick's."""
    flow = replace(ef.flow, serial=new_serial(), rev_facts=fresh_rev(), rev_traffic=fresh_rev())
    return replace(ef, flow=flow, rev_remote=fresh_rev())


class Numbering:
    """Numbers flows as the engine's stages do: a serial per conversation (key, and the
    how-many-th flow with that key in the tick), revisions moved only by changed parts."""

    def __init__(self) -> None:
        self.last: dict[tuple[FlowKey, int], EnrichedFlow] = {}

    def __call__(self, flows: Sequence[EnrichedFlow]) -> list[EnrichedFlow]:
        out, now, seen = [], {}, {}  # type: ignore[var-annotated]
        for ef in flows:
            n = seen[ef.flow.key] = seen.get(ef.flow.key, -1) + 1
            prev = self.last.get((ef.flow.key, n))
            f = ef.flow
            if prev is None:
                flow = replace(
                    f, serial=new_serial(), rev_facts=fresh_rev(), rev_traffic=fresh_rev()
                )
                numbered = EnrichedFlow(flow, ef.remote, fresh_rev())
            else:
                facts, traffic = revisions(f, prev.flow)
                flow = replace(f, serial=prev.flow.serial, rev_facts=facts, rev_traffic=traffic)
                same = prev.remote == ef.remote
                numbered = EnrichedFlow(flow, ef.remote, prev.rev_remote if same else fresh_rev())
            now[(ef.flow.key, n)] = numbered
            out.append(numbered)
        self.last = now
        return out


class Twins:
    """An incremental engine and a from-scratch one, fed the same ticks; and a third
    incremental one handed each tick's changes as the live engine hands them
    (`ChangeTracker`), which must agree with both."""

    def __init__(self) -> None:
        rules = load_rules()
        self.cached = RuleEngine(rules)
        self.fed = RuleEngine(rules)
        self.tracker = ChangeTracker()
        self.scratch = RuleEngine(rules)
        self.scratch_last: list[EnrichedFlow] = []
        self.number = Numbering()

    def tick(
        self, flows: Sequence[EnrichedFlow], now: float, host: HostFacts | None = None
    ) -> list[Alert]:
        copies = [renumbered(ef) for ef in flows]  # equal content, new conversations
        self.scratch_last = copies
        numbered = self.number(flows)
        got = self.cached.evaluate(numbered, now, host)
        fed = self.fed.evaluate(numbered, now, host, self.tracker.step(numbered))
        want = self.scratch.evaluate(copies, now, host)
        assert got == want
        assert fed == want
        assert self.fed.classified == self.cached.classified
        assert self.fed.carried == self.cached.carried
        assert self.scratch.classified == len(flows)
        return got


def matched(engine: RuleEngine, ef: EnrichedFlow) -> set[str]:
    """The rules `ef` (its conversation's flow) matched in the engine's last evaluation."""
    (seen,) = [s for s in engine._filed.answers.values() if s.ef.flow.key == ef.flow.key]
    return {engine.rules.rules[ri].id for ri, _ in seen.hits}


def _open(flows: Sequence[EnrichedFlow]) -> list[EnrichedFlow]:
    """As the live engine hands socket flows: open, so no last_seen (detection uses now)."""
    return [replace(ef, flow=replace(ef.flow, last_seen=None)) for ef in flows]


def test_unchanged_flows_skip_conditions_and_keep_suppression_exact() -> None:
    twins = Twins()
    quiet = _open(
        [flow(process="python3", remote_ip="127.0.0.1", remote_port=p) for p in range(50)]
    )
    vpn = _open([flow(process="vpnclient", remote_ip="203.0.113.9", country="JP")])
    relay = _open([listen("vpnserver", 443), *inbound("vpnserver", PEERS)])
    flows = [*quiet, *vpn, *relay]
    first = twins.tick(flows, T0, replace(PLAIN_HOST, taken_at=T0))
    assert {"vpn.unexpected", "vpngate.relay_mode"} <= {a.rule_id for a in first}
    assert twins.tick(flows, T0 + 1, replace(PLAIN_HOST, taken_at=T0 + 1)) == []
    assert twins.cached.classified == 0
    # Past suppress_for (1 h) the open alerts close; the flows are still there, so the same
    # findings open new alerts, although none of their conditions ran again.
    later = twins.tick(flows, T0 + 3700, replace(PLAIN_HOST, taken_at=T0 + 3700))
    assert twins.cached.classified == 0
    assert {a.state.value for a in later if a.rule_id == "vpn.unexpected"} == {"closed", "open"}


def test_a_host_fact_change_re_runs_the_conditions() -> None:
    twins = Twins()
    flows = _open([listen("vpnserver", 443)])
    twins.tick(flows, T0, PLAIN_HOST)
    before = twins.tick(flows, T0 + 1, PLAIN_HOST)
    assert "vpngate.relay_mode" not in {a.rule_id for a in before}
    after = twins.tick(flows, T0 + 2, replace(VPNGATE_HOST, taken_at=T0 + 2))
    assert twins.cached.classified == 1
    assert "vpngate.relay_mode" in {a.rule_id for a in after}


def test_a_changed_flow_is_evaluated_again_and_new_flows_reach_the_python_rules() -> None:
    twins = Twins()
    curl = _open([flow(process="curl", remote_ip="203.0.113.9", country="JP")])
    other = _open([flow(process="python3", remote_ip="127.0.0.1")])
    first = twins.tick([*curl, *other], T0)
    assert [a.rule_id for a in first] == ["process.first_connection"]
    fetched = replace(curl[0], flow=replace(curl[0].flow, sni="www.vpngate.net"))
    abroad = _open([flow(process="curl", remote_ip="198.51.100.4", country="US")])
    second = twins.tick([fetched, *other, *abroad], T0 + 1)
    assert twins.cached.classified == 2
    assert {a.rule_id for a in second} == {"vpngate.list_fetch", "geo.new_country"}


ticks_strategy = st.lists(
    st.tuples(
        st.lists(st.integers(0, 11), max_size=12),  # which flows of the pool this tick
        st.lists(st.integers(0, 11), max_size=3),  # which of them change (new objects)
        st.floats(0, 4000),  # seconds since the last tick
        st.booleans(),  # VPN Gate hub configured
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=150, deadline=None)
@given(pool=st.lists(flows_strategy, min_size=12, max_size=12), ticks=ticks_strategy)
def test_incremental_equals_from_scratch_for_any_ticks(
    pool: list[EnrichedFlow], ticks: list[tuple[list[int], list[int], float, bool]]
) -> None:
    twins = Twins()
    pool = [replace(ef, flow=replace(ef.flow, last_seen=None)) if i % 2 else ef
            for i, ef in enumerate(pool)]  # fmt: skip
    now = T0
    for picks, changes, step, hub in ticks:
        now += step
        for i in changes:
            f = pool[i].flow
            pool[i] = replace(pool[i], flow=replace(f, bytes_sent=(f.bytes_sent or 0) + 1))
        host = replace(VPNGATE_HOST if hub else PLAIN_HOST, taken_at=now)
        twins.tick([pool[i] for i in picks], now, host)


def test_listen_direction_flows_feed_process_listens_context() -> None:
    twins = Twins()
    out = _open([flow(process="vpnclient", remote_ip="203.0.113.9", direction=Direction.OUTBOUND)])
    twins.tick(out, T0)
    twins.tick([*out, *_open([listen("vpnclient", 995)])], T0 + 1)
    assert twins.cached.classified == 2  # the listeners changed: everything ran again


def test_a_window_keeps_reporting_on_ticks_where_nothing_matches() -> None:
    # The relay window (1 h) still holds its peers after they left: each tick its finding
    # refreshes the alert, so it closes only an hour after the window empties.
    twins = Twins()
    twins.tick(_open(inbound("vpnserver", PEERS)), T0)
    twins.tick([], T0 + 3000)
    assert [a for a in twins.tick([], T0 + 3700) if a.rule_id == "vpngate.relay_mode"] == []
    (closed,) = [a for a in twins.tick([], T0 + 7300) if a.rule_id == "vpngate.relay_mode"]
    assert closed.state.value == "closed"
    assert closed.last_seen == T0 + 3000


def test_a_flow_that_only_moved_traffic_re_runs_just_the_counter_rules() -> None:
    # The relay-list fetch rule reads byte counters; the rest of the pack does not. A new
    # flow object whose only change is traffic keeps the other rules' answers and re-runs
    # that one: while the exchange stays small it still matches, once it grows it does not.
    twins = Twins()
    fetch = _open([flow(process="vpnclient", remote_ip="90.189.249.23", country="RU")])
    first = twins.tick(fetch, T0)
    assert "vpngate.list_fetch" in {a.rule_id for a in first}
    small = replace(fetch[0], flow=replace(fetch[0].flow, bytes_received=9000))
    twins.tick([small], T0 + 1)
    assert (twins.cached.classified, twins.cached.carried) == (1, 1)
    assert "vpngate.list_fetch" in matched(twins.cached, small)
    big = replace(small, flow=replace(small.flow, bytes_received=300_000))
    twins.tick([big], T0 + 2)
    assert (twins.cached.classified, twins.cached.carried) == (1, 1)
    assert "vpngate.list_fetch" not in matched(twins.cached, big)
    assert matched(twins.cached, big) == matched(twins.scratch, twins.scratch_last[0])
    # A change beyond traffic (the SNI arrived) runs every rule again.
    named = replace(big, flow=replace(big.flow, sni="www.vpngate.net"))
    twins.tick([named], T0 + 3)
    assert (twins.cached.classified, twins.cached.carried) == (1, 0)


def test_a_tunnel_coming_up_re_runs_the_conditions_of_unchanged_flows() -> None:
    engine = RuleEngine(load_rules(), OPTIONAL_TUNNEL)
    direct = by("eth0")
    assert not [a for a in engine.evaluate([direct], T0) if a.rule_id == "vpn.leak"]
    tunnel = by("wg0", remote_ip="198.51.100.80")
    alerts = engine.evaluate([direct, tunnel], T0 + 1)
    assert [a.flow_key for a in alerts if a.rule_id == "vpn.leak"] == [direct.flow.key]


def test_another_process_s_listener_re_runs_only_that_process_s_flows() -> None:
    """A listener of one program coming or going (a container's server restarting) changes
    no other program's `process.listens`: only that program's flows run their conditions
    again, and the alerts stay those of a from-scratch evaluation."""
    twins = Twins()
    out = _open(
        [
            flow(process="vpnclient", remote_ip="203.0.113.9", direction=Direction.OUTBOUND),
            flow(process="curl", remote_ip="203.0.113.10", local_port=51001),
        ]
    )
    server = listen("nginx", 8443)
    other = replace(server, flow=replace(server.flow, process=make_process("nginx", pid=777)))
    twins.tick(out, T0)
    twins.tick([*out, *_open([other])], T0 + 1)
    assert twins.cached.classified == 1  # the new listener only
    twins.tick(out, T0 + 2)
    assert twins.cached.classified == 0  # it went: nobody else's listeners changed
    mine = _open([listen("vpnclient", 995)])
    twins.tick([*out, *mine], T0 + 3)
    assert twins.cached.classified == 3  # the same pid (4242) as both outbound flows
