"""The change mechanism (`model.versions`): the engine's `ChangeTracker` works out once per
tick which versions are new and which left, and every stage's `Filed` answers follow it.

Checked against the meaning, worked out from scratch here for each tick: the new positions
are those whose version the tick before did not have (and every flow without a serial), the
gone versions are the numbered ones of the tick before that this tick lacks; a stage's
answers are one per numbered version of the tick. A stage handed the tracker's changes, one
that works them out itself and one that misses ticks must all end with the same answers.
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from netwatch.model import EnrichedFlow
from netwatch.model.versions import (
    UNNUMBERED,
    ChangeTracker,
    Filed,
    TickChanges,
    Version,
    same_objects,
)
from tests.builders import make_flow

BASE = make_flow()


def _flow(version: Version) -> EnrichedFlow:
    """A flow carrying `version` (serial, rev_facts, rev_traffic, rev_remote)."""
    serial, facts, traffic, remote = version
    f = replace(BASE.flow, serial=serial, rev_facts=facts, rev_traffic=traffic)
    return EnrichedFlow(f, BASE.remote, remote)


def _expected(before: list[Version] | None, tick: list[Version]) -> tuple[list[int], set[Version]]:
    old = {v for v in before or () if v != UNNUMBERED}
    new = [i for i, v in enumerate(tick) if v == UNNUMBERED or v not in old]
    gone = old - set(tick)
    return new, gone


def _answers(filed: Filed[str], changes: TickChanges) -> None:
    """File, for each new position, an answer made from its version alone."""
    filed.file(changes, [repr(changes.versions[i]) for i in changes.new])


versions_st = st.one_of(
    st.just(UNNUMBERED),
    st.tuples(st.integers(1, 4), st.integers(1, 3), st.integers(1, 3), st.integers(1, 2)),
)
ticks_st = st.lists(
    st.tuples(st.lists(versions_st, max_size=8), st.booleans(), st.sampled_from(["new", "reuse"])),
    min_size=1,
    max_size=8,
)


def _made(tick: list[Version], last: list[EnrichedFlow], how: str) -> list[EnrichedFlow]:
    """The tick's flows: all new objects, or last tick's very object wherever the flow at
    that position has the same version (a quiet stretch hands a stage the same objects,
    which `same_objects` takes without reading a version)."""
    if how == "new":
        return [_flow(v) for v in tick]
    return [
        last[i] if i < len(last) and last[i].version == v else _flow(v) for i, v in enumerate(tick)
    ]


@given(ticks_st)
def test_changes_and_filed_answers_follow_every_tick(
    ticks: list[tuple[list[Version], bool, str]],
) -> None:
    tracker = ChangeTracker()
    fed: Filed[str] = Filed()  # handed the tracker's changes every tick
    own: Filed[str] = Filed()  # works them out itself
    patchy: Filed[str] = Filed()  # handed them only on some ticks (a stage that missed one)
    before: list[Version] | None = None
    flows: list[EnrichedFlow] = []
    for tick, hand_over, how in ticks:
        flows = _made(tick, flows, how)
        changes = tracker.step(flows)
        new, gone = _expected(before, tick)
        assert list(changes.new) == new
        assert set(changes.gone) == gone and len(changes.gone) == len(gone)
        assert list(changes.versions) == tick
        _answers(fed, fed.changes(flows, changes))
        _answers(own, own.changes(flows))
        if hand_over:
            _answers(patchy, patchy.changes(flows, changes))
        want = {v: repr(v) for v in tick if v != UNNUMBERED}
        assert fed.answers == want
        assert own.answers == want
        if hand_over:
            assert patchy.answers == want
        before = tick


numbered_st = st.tuples(st.integers(1, 12), st.integers(1, 3), st.integers(1, 3), st.integers(1, 2))
few_st = st.tuples(st.integers(1, 2), st.just(1), st.integers(1, 2), st.just(1))
unique_ticks_st = st.lists(
    st.tuples(
        st.lists(numbered_st, max_size=8, unique=True) | st.lists(few_st, max_size=6),
        st.sampled_from(["new", "reuse", "reuse at even places"]),
    ),
    min_size=1,
    max_size=10,
)


@given(unique_ticks_st)
def test_ticks_of_numbered_flows_each_once_follow_every_tick(
    ticks: list[tuple[list[Version], str]],
) -> None:
    """Every flow numbered (each version once, or some twice): the tracker and a `Filed`
    working its changes out look only at the places whose flow is not last tick's object
    there when each version was there once, and walk them all when one was there twice."""
    tracker = ChangeTracker()
    own: Filed[str] = Filed()
    before: list[Version] | None = None
    flows: list[EnrichedFlow] = []
    for tick, how in ticks:
        if how == "reuse at even places":
            made = _made(tick, flows, "reuse")
            flows = [f if i % 2 == 0 else _flow(f.version) for i, f in enumerate(made)]
        else:
            flows = _made(tick, flows, how)
        new, gone = _expected(before, tick)
        mine = own.changes(flows)
        _answers(own, mine)
        for changes in (tracker.step(flows), mine):
            assert list(changes.new) == new
            assert set(changes.gone) == gone and len(changes.gone) == len(gone)
            assert list(changes.versions) == tick
        assert own.answers == {v: repr(v) for v in tick}
        before = tick


def test_a_quiet_tick_has_no_changes_and_costs_the_stage_nothing() -> None:
    tracker = ChangeTracker()
    flows = [_flow((1, 1, 1, 1)), _flow((2, 1, 1, 1))]
    tracker.step(flows)
    quiet = tracker.step(list(flows))
    assert (list(quiet.new), list(quiet.gone)) == ([], [])


def test_the_same_objects_are_taken_as_unchanged_and_one_replaced_object_is_seen() -> None:
    tracker = ChangeTracker()
    flows = [_flow((1, 1, 1, 1)), _flow((2, 1, 1, 1)), _flow((3, 1, 1, 1))]
    tracker.step(flows)
    for same in (flows, list(flows), tuple(flows)):
        quiet = tracker.step(same)
        assert (list(quiet.new), list(quiet.gone)) == ([], [])
        assert list(quiet.versions) == [f.version for f in flows]
    moved = [flows[0], _flow((2, 1, 2, 1)), flows[2]]
    changes = tracker.step(moved)
    assert (list(changes.new), list(changes.gone)) == ([1], [(2, 1, 1, 1)])


def test_same_objects_is_identity_in_order_not_equality() -> None:
    a, b = _flow((1, 1, 1, 1)), _flow((2, 1, 1, 1))
    assert same_objects([a, b], (a, b)) and same_objects((a,), (a,))
    assert not same_objects([a, b], None)
    assert not same_objects([b, a], [a, b])
    assert not same_objects([a], [a, b])
    twin = _flow((1, 1, 1, 1))
    assert twin == a and not same_objects([twin, b], [a, b])


def test_flows_without_a_serial_are_new_every_tick_and_never_filed() -> None:
    tracker, filed = ChangeTracker(), Filed[str]()
    flows = [_flow(UNNUMBERED), _flow((5, 1, 1, 1))]
    for _ in range(3):
        changes = filed.changes(flows, tracker.step(flows))
        assert 0 in changes.new
        _answers(filed, changes)
        assert list(filed.answers) == [(5, 1, 1, 1)]


def test_the_answers_of_versions_that_left_are_handed_back() -> None:
    filed: Filed[str] = Filed()
    a, b = _flow((1, 1, 1, 1)), _flow((2, 1, 1, 1))
    _answers(filed, filed.changes([a, b]))
    changes = filed.changes([b])
    assert filed.file(changes, []) == [repr((1, 1, 1, 1))]


def test_a_version_there_twice_has_not_left_while_one_of_them_stays() -> None:
    """Two flows of one version, one replaced: the version did not leave (the in-place
    shortcut takes each version to be in one place, and must see it is not)."""
    v, u = (1, 1, 1, 1), (2, 1, 1, 1)
    tracker = ChangeTracker()
    first = _made([v, v], [], "new")
    tracker.step(first)
    second = _made([u, v], first, "reuse")
    assert second[1] is first[1]
    changes = tracker.step(second)
    assert list(changes.new) == [0] and list(changes.gone) == []
