"""The rule engine: enriched flows (and host facts) in, alerts raised or updated out.

`RuleEngine` implements the pipeline's `Detector`. Each call evaluates every rule on the
tick's flows: a flow takes the first case of a rule it matches; windowed cases aggregate
their flows per group over time (distinct peers, countries, ...) and fire when `having`
holds; Python rules select among the flows their condition passed. Findings go through the
policy (ignore / log / alert) and the `Suppressor`. Works the same for one pass (`snapshot`,
`analyze`) and per tick (daemon). netwatch's own processes (its `lists update` fetch) and
trusted networks never raise anything. Pure: time comes in as `now`.
"""

from __future__ import annotations

import ipaddress
import itertools
import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import cast

from netwatch.detect.conditions import Leaf, Node, explain
from netwatch.detect.fields import FIELDS, Env
from netwatch.detect.loader import load_rules
from netwatch.detect.messages import flow_values, human_window, render
from netwatch.detect.novelty import FirstSeenStore, MemoryFirstSeen
from netwatch.detect.policy import PolicyView
from netwatch.detect.python_rules import PYTHON_RULES, PythonRule
from netwatch.detect.rule import Case, Finding, Rule, RuleSet, Window
from netwatch.detect.suppress import Suppressor
from netwatch.model import (
    Action,
    Alert,
    Direction,
    EnrichedFlow,
    Evidence,
    HostFacts,
    Policy,
    ProcessRef,
)
from netwatch.model.versions import Filed, TickChanges, Version, recall


def is_netwatch_fetch(process: ProcessRef | None) -> bool:
    """Whether a process is netwatch's own opt-in `lists update` (excluded from alerts)."""
    if process is None:
        return False
    args = process.cmdline
    if not any(a == "netwatch" or a.endswith("/netwatch") for a in args):
        return False
    return any(a == "lists" and args[i + 1 : i + 2] == ("update",) for i, a in enumerate(args))


def _listening(flows: Sequence[EnrichedFlow]) -> dict[int, tuple[str, ...]]:
    """Non-loopback listening sockets by owning pid (the `process.listens` field)."""
    out: dict[int, dict[str, None]] = {}
    for ef in flows:
        f = ef.flow
        p = f.process
        if f.direction is Direction.LISTEN and p is not None and not f.key.local.ip.is_loopback:
            out.setdefault(p.pid, {})[f"{f.key.transport}/{f.key.local.port}"] = None
    return {pid: tuple(socks) for pid, socks in out.items()}


COUNTER_FIELDS = frozenset(
    ("bytes_sent", "bytes_received", "bytes_total", "packets_sent", "packets_received", "duration")
)
"""Rule fields that move with a flow's traffic (`duration` runs to its last packet)."""
_HITS = operator.attrgetter("hits")
_Hit = tuple[int, int]
"""(rule number, case number) of a match."""


def _fields_read(node: Node) -> set[str]:
    """The fields a condition tests."""
    if isinstance(node, Leaf):
        return {node.field}
    return set().union(*map(_fields_read, node.children))


def _moved_only(before: EnrichedFlow, now: EnrichedFlow) -> bool:
    """Whether `now` is `before`'s conversation with only its traffic (counters, last packet)
    moved: the same serial, facts and answer revisions (docs/architecture.md, section 4)."""
    b, n = before.flow, now.flow
    return (
        b.serial == n.serial != 0
        and b.rev_facts == n.rev_facts
        and before.rev_remote == now.rev_remote
    )


def _value_text(value: object) -> str:
    if value is None:
        return "?"
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def _prefix(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    bits = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{bits}", strict=False))


@dataclass
class WindowStats:
    """Distinct counts over one group's window (the `window.*` fields)."""

    peers: int = 0
    prefixes: int = 0
    countries: int = 0
    asns: int = 0
    flows: int = 0
    country_list: tuple[str, ...] = ()


@dataclass
class _Group:
    """Observations of one group: peer -> (time, country, asn), flow key -> time."""

    peers: dict[str, tuple[float, str | None, int | None]] = field(default_factory=dict)
    flows: dict[object, float] = field(default_factory=dict)
    latest: EnrichedFlow | None = None

    def prune(self, horizon: float) -> None:
        self.peers = {k: v for k, v in self.peers.items() if v[0] >= horizon}
        self.flows = {k: t for k, t in self.flows.items() if t >= horizon}

    def stats(self) -> WindowStats:
        countries = sorted({c for _, c, _ in self.peers.values() if c})
        return WindowStats(
            peers=len(self.peers),
            prefixes=len({_prefix(ipaddress.ip_address(p)) for p in self.peers}),
            countries=len(countries),
            asns=len({a for _, _, a in self.peers.values() if a is not None}),
            flows=len(self.flows),
            country_list=tuple(countries),
        )


def _ids(rule: Rule, ef: EnrichedFlow, env: Env) -> tuple[str, str]:
    """A flow's alert identifier under `rule`, and the occurrence it counts as."""
    k = ef.flow.key
    identifier = "|".join(_value_text(FIELDS[n].get(ef, env)) for n in rule.identifier)
    return identifier, f"{k.transport.value}|{k.local}|{k.remote}"


class _Seen:
    """One flow object's evaluation: the (rule, case) pairs it matched, its identifiers."""

    __slots__ = ("_ids", "ef", "eligible", "hits")

    def __init__(
        self, ef: EnrichedFlow, hits: tuple[tuple[int, int], ...], eligible: bool = True
    ) -> None:
        self.ef = ef
        self.hits = hits
        self.eligible = eligible
        self._ids: dict[int, tuple[str, str]] = {}

    def ids(self, ri: int, rule: Rule, env: Env) -> tuple[str, str]:
        """`_ids` for rule number `ri`, computed once per flow object."""
        got = self._ids.get(ri)
        if got is None:
            got = self._ids[ri] = _ids(rule, self.ef, env)
        return got


class RuleEngine:
    """Evaluates a rule set under a policy; keeps windows, first-seen state and open alerts."""

    def __init__(
        self,
        rules: RuleSet | None = None,
        policy: Policy | None = None,
        *,
        first_seen: FirstSeenStore | None = None,
        own_pids: frozenset[int] = frozenset(),
    ) -> None:
        self.rules = rules if rules is not None else load_rules()
        self.policy = PolicyView(policy)
        self.first_seen = first_seen if first_seen is not None else MemoryFirstSeen()
        self.own_pids = own_pids
        self.suppressor = Suppressor()
        self._python: dict[str, PythonRule] = {
            r.id: PYTHON_RULES[r.python](self.first_seen) for r in self.rules.rules if r.python
        }
        self._windows: dict[tuple[str, int], dict[tuple[str, ...], _Group]] = {}
        self._filed: Filed[_Seen] = Filed()
        """Last tick's evaluations by flow version (`EnrichedFlow.version`)."""
        self._context: tuple[object, ...] | None = None
        self._listening: dict[int, tuple[str, ...]] = {}
        self._tunnel_up = False
        self._per_rule: list[list[tuple[_Seen, int, bool]]] = []
        self._counting: list[bool] = []
        """Per rule: whether a condition reads traffic counters (see `COUNTER_FIELDS`)."""
        self._skip: list[bool] = []
        """Per rule: ignored by the policy (this call's)."""
        self._windowed: list[bool] = []
        self._windowed_of: RuleSet | None = None
        self.classified = 0
        """Flows whose conditions ran in the last `evaluate` (the rest were unchanged)."""
        self.carried = 0
        """Of those, flows that only moved traffic: only counter-reading rules ran again."""
        self._actions = {r.id: self.policy.action(r.id) for r in self.rules.rules}

    def evaluate(
        self,
        flows: Sequence[EnrichedFlow],
        now: float,
        host: HostFacts | None = None,
        changes: TickChanges | None = None,
    ) -> list[Alert]:
        """Return the alerts raised, updated or closed by this tick's flows.

        Incremental: which case of which rule a flow matches depends only on the flow's values
        and the context (host facts, listening sockets, rules, policy), so a flow with last
        tick's version under the same context takes its matches from last tick instead of
        re-running the conditions. Everything after that (suppression touches, windows,
        findings and their order) runs exactly as for a new flow. `changes`: how the flows
        differ from the engine's tick before (`model.versions`; else worked out here).
        """
        filed = self._filed
        delta = filed.changes(flows, changes)
        same_flows = not (delta.new or delta.gone)
        listening, tunnel_up = self._listening, self._tunnel_up
        if not same_flows:
            if self._listeners_moved(flows, delta):
                listening = _listening(flows)
            if self.policy.policy.tunnel is not None:
                tunnel_up = self.policy.tunnel_up(flows)
        self._listening, self._tunnel_up = listening, tunnel_up
        env = Env(self.policy, now, host, listening, tunnel_up)
        closed = self.suppressor.expire(now)
        # Host facts carry their own time: only what they say counts as a change.
        facts = None if host is None else replace(host, taken_at=0.0)
        context = (facts, listening, tunnel_up, self.rules, self.policy, self.own_pids)
        if not self._same_context(context):
            filed.keep_only(self._unaffected(context))
            delta = filed.changes(flows, changes)  # against the evaluations still true
        self._context = context
        per_rule: list[list[tuple[_Seen, int, bool]]] = [[] for _ in self.rules.rules]
        if self._windowed_of is not self.rules or len(self._windowed) != len(self.rules.rules):
            self._windowed = [any(c.window for c in r.cases) for r in self.rules.rules]
            self._counting = [
                any(_fields_read(c.when) & COUNTER_FIELDS for c in r.cases)
                for r in self.rules.rules
            ]
            self._windowed_of = self.rules
        self._skip = [self._ignored(r) for r in self.rules.rules]
        classified = 0
        if not (delta.new or delta.gone) and filed.answers and len(self._per_rule) == len(per_rule):
            # Last tick's versions under the same context: last tick's matches, none fresh.
            filed.file(delta, ())
            per_rule = [[(s, ci, False) for s, ci, _ in hits] for hits in self._per_rule]
        else:
            classified = self._match(flows, delta, env, per_rule)
        self._per_rule = per_rule
        self.classified = classified
        findings: list[Finding] = []
        for ri, rule in enumerate(self.rules.rules):
            # Window cases report from what their groups hold even on a tick nothing matched.
            if per_rule[ri] or (self._windowed[ri] and not self._skip[ri]):
                findings.extend(self._run(ri, rule, per_rule[ri], env))
        return closed + self.suppressor.update(findings, self._actions)

    def _listeners_moved(self, flows: Sequence[EnrichedFlow], delta: TickChanges) -> bool:
        """Whether a listening socket came or went: only then can `_listening` differ."""
        if self._context is None:
            return True
        filed = self._filed.answers
        gone = (s.ef for v in delta.gone if (s := filed.get(v)) is not None)
        new = (flows[i] for i in delta.new)
        return any(ef.flow.direction is Direction.LISTEN for ef in itertools.chain(new, gone))

    def _match(
        self,
        flows: Sequence[EnrichedFlow],
        delta: TickChanges,
        env: Env,
        per_rule: list[list[tuple[_Seen, int, bool]]],
    ) -> int:
        """Each new version's matches, filed with the rest (last tick's) into `per_rule`.

        A flow whose only change is traffic (`rev_traffic` moved; counters, last packet)
        re-runs just the rules that read counters; the rest keep last tick's answer for its
        serial (the version it had is among the gone ones). Returns how many flows ran
        conditions.
        """
        filed = self._filed
        before = filed.answers
        by_serial = {s.ef.flow.serial: s for v in delta.gone if (s := before.get(v)) is not None}
        self.carried = 0
        made: list[_Seen] = []
        for i in delta.new:
            ef = flows[i]
            prev = by_serial.get(ef.flow.serial)
            if prev is not None and _moved_only(prev.ef, ef):
                s = self._reclassify(prev, ef, env)
                self.carried += 1
            else:
                s = self._classify(ef, env)
            made.append(s)
        filed.file(delta, made)
        done = recall(filed.answers, delta.versions)
        for i, s in zip(delta.new, made, strict=True):
            done[i] = s  # flows without a serial are not filed
        fresh = set(delta.new)
        hits = list(map(_HITS, cast(list[_Seen], done)))
        for i in itertools.compress(range(len(done)), hits):
            s = cast(_Seen, done[i])
            is_fresh = i in fresh
            for ri, ci in s.hits:
                per_rule[ri].append((s, ci, is_fresh))
        return len(made)

    def _ignored(self, rule: Rule) -> bool:
        return self.policy.action(rule.id) is Action.IGNORE

    def _unaffected(self, context: tuple[object, ...]) -> dict[Version, _Seen]:
        """Last tick's evaluations still true under a changed `context`: when only the
        listening sockets changed, those of flows whose process's listeners are the same
        (a condition sees them only as its own flow's `process.listens`), else none. A
        container's or any program's listener coming or going then re-runs that program's
        flows, not every flow."""
        before = self._context
        if before is None or not all(
            i == 1 or a is b or a == b for i, (a, b) in enumerate(zip(before, context, strict=True))
        ):
            return {}
        was = cast(dict[int, tuple[str, ...]], before[1])
        now = cast(dict[int, tuple[str, ...]], context[1])
        moved = {pid for pid in was.keys() | now.keys() if was.get(pid) != now.get(pid)}
        return {
            v: s
            for v, s in self._filed.answers.items()
            if (p := s.ef.flow.process) is None or p.pid not in moved
        }

    def _same_context(self, context: tuple[object, ...]) -> bool:
        before = self._context
        if before is None:
            return False
        return all(a is b or a == b for a, b in zip(before, context, strict=True))

    def _classify(self, ef: EnrichedFlow, env: Env) -> _Seen:
        """Run the conditions: the first matching case of each rule that is not ignored."""
        if not self._eligible(ef):
            return _Seen(ef, (), eligible=False)
        return _Seen(ef, self._hits(ef, env, range(len(self.rules.rules))))

    def _reclassify(self, prev: _Seen, ef: EnrichedFlow, env: Env) -> _Seen:
        """`_classify` for a flow that moved only traffic since `prev`: rules that do not
        read counters keep `prev`'s answer."""
        if not prev.eligible:
            return _Seen(ef, (), eligible=False)
        counting = self._counting
        if not any(counting):
            return _Seen(ef, prev.hits)
        kept = [h for h in prev.hits if not counting[h[0]]]
        again = self._hits(ef, env, itertools.compress(range(len(counting)), counting))
        return _Seen(ef, tuple(sorted((*kept, *again))))

    def _hits(
        self, ef: EnrichedFlow, env: Env, rules: Iterable[int]
    ) -> tuple[tuple[int, int], ...]:
        """(rule, case) of the first matching case of each of `rules` that is not ignored."""
        hits: list[_Hit] = []
        all_rules, skip = self.rules.rules, self._skip
        for ri in rules:
            if skip[ri]:
                continue
            for ci, case in enumerate(all_rules[ri].cases):
                if case.pred(ef, env):
                    hits.append((ri, ci))
                    break
        return tuple(hits)

    def _eligible(self, ef: EnrichedFlow) -> bool:
        p = ef.flow.process
        if p is not None and (p.pid in self.own_pids or is_netwatch_fetch(p)):
            return False
        return not self.policy.trusted(ef)

    def _run(
        self, ri: int, rule: Rule, matched: Sequence[tuple[_Seen, int, bool]], env: Env
    ) -> Iterable[Finding]:
        if rule.python is not None:
            impl = self._python[rule.id]
            # A monotonic rule already saw (and remembered) every flow that passed last tick.
            every = not impl.incremental
            passed = [s.ef for s, _, fresh in matched if fresh or every]
            case = rule.cases[0]
            for ef, extra in impl.select(passed, env):
                ids = None
                if impl.repeats:  # each tick's report is news: its evidence moved
                    identifier, occurrence = _ids(rule, ef, env)
                    ids = (identifier, f"{occurrence}@{env.now}")
                finding = self._flow_finding(rule, case, ef, env, extra, ids)
                if finding is not None:
                    yield finding
            return
        windowed: dict[int, list[EnrichedFlow]] = {}
        for s, ci, _ in matched:
            case = rule.cases[ci]
            if case.window is None:
                finding = self._flow_finding(rule, case, s.ef, env, (), s.ids(ri, rule, env))
                if finding is not None:
                    yield finding
            else:
                windowed.setdefault(ci, []).append(s.ef)
        for i, case in enumerate(rule.cases):
            if case.window is not None:
                yield from self._window_findings(
                    rule, i, case, case.window, windowed.get(i, []), env
                )

    def _flow_finding(
        self,
        rule: Rule,
        case: Case,
        ef: EnrichedFlow,
        env: Env,
        extra: tuple[Evidence, ...],
        ids: tuple[str, str] | None = None,
    ) -> Finding | None:
        """A finding for one flow; None when its open alert already counted this flow."""
        f = ef.flow
        identifier, occurrence = ids or _ids(rule, ef, env)
        at = f.last_seen if f.last_seen is not None else env.now
        if self.suppressor.touch(rule.id, identifier, occurrence, at):
            return None

        def details() -> tuple[str, tuple[Evidence, ...]]:
            message = render(case.message, flow_values(ef, env))
            return message, (*explain(case.when, ef, env), *extra)

        return Finding(
            rule=rule,
            identifier=identifier,
            message="",
            severity=case.severity or rule.severity,
            at=at,
            flow=ef,
            occurrences=(occurrence,),
            details=details,
        )

    def _window_findings(
        self,
        rule: Rule,
        index: int,
        case: Case,
        window: Window,
        flows: Sequence[EnrichedFlow],
        env: Env,
    ) -> Iterable[Finding]:
        groups = self._windows.setdefault((rule.id, index), {})
        for ef in flows:
            gkey = tuple(_value_text(FIELDS[n].get(ef, env)) for n in window.group_by)
            group = groups.setdefault(gkey, _Group())
            at = ef.flow.last_seen if ef.flow.last_seen is not None else env.now
            remote = ef.flow.key.remote
            if remote is not None:
                r = ef.remote
                group.peers[str(remote.ip)] = (
                    at,
                    None if r is None else r.country,
                    None if r is None else r.asn,
                )
            group.flows[ef.flow.key] = at
            group.latest = ef
        horizon = env.now - window.seconds
        for gkey, group in list(groups.items()):
            group.prune(horizon)
            if not group.peers and not group.flows:
                del groups[gkey]
                continue
            stats = group.stats()
            if group.latest is None or not window.having_pred(stats, env):
                continue
            ef = group.latest
            values = {
                **flow_values(ef, env),
                "peers": str(stats.peers),
                "countries": str(stats.countries),
                "asns": str(stats.asns),
                "prefixes": str(stats.prefixes),
                "country_list": ", ".join(stats.country_list) or "unknown",
                "window": human_window(window.seconds),
            }
            yield Finding(
                rule=rule,
                identifier="|".join(gkey),
                message=render(case.message, values),
                severity=case.severity or rule.severity,
                at=env.now,
                flow=ef,
                evidence=(
                    Evidence("window.peers", str(stats.peers)),
                    Evidence("window.countries", str(stats.countries)),
                    Evidence("window.country_list", values["country_list"]),
                    Evidence("window.prefixes", str(stats.prefixes)),
                    *explain(case.when, ef, env),
                ),
                occurrences=tuple(sorted(group.peers)),
            )
