"""The honest share: the last minute's bytes and flows by known, guessed and unknown owner."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from netwatch.flows.share import ShareWindow
from netwatch.model import Attribution, EnrichedFlow, NamedShare
from netwatch.model.versions import ChangeTracker
from tests.builders import make_flow, make_process


def _flow(port: int, sent: int, received: int, owner: str | None = "curl", serial: int = 0,
          rev: int = 0, guessed: bool = False) -> EnrichedFlow:  # fmt: skip
    ef = make_flow(local_port=port, bytes_sent=sent, bytes_received=received,
                   process=None if owner is None else make_process(owner))  # fmt: skip
    flow = ef.flow
    if guessed:
        flow = replace(flow, attribution=Attribution.GUESSED)
    flow = replace(flow, serial=serial, rev_traffic=rev)
    return replace(ef, flow=flow)


def test_bytes_count_their_growth_in_the_class_the_owner_has() -> None:
    w = ShareWindow()
    assert w.observe([_flow(1, 100, 900), _flow(2, 50, 50, owner=None)], 0.0) == NamedShare(
        bytes_known=1000, bytes_unknown=100, flows_known=1, flows_unknown=1
    )
    # The same counters again: nothing moved; the second flow grows and is now guessed.
    share = w.observe([_flow(1, 100, 900), _flow(2, 60, 90, guessed=True)], 1.0)
    assert share == NamedShare(bytes_known=1000, bytes_guessed=50, bytes_unknown=100,
                               flows_known=1, flows_guessed=1)  # fmt: skip
    assert share.bytes_share() == (1000 / 1150, 50 / 1150, 100 / 1150)
    assert share.flows_share() == (0.5, 0.5, 0.0)


def test_the_window_forgets_bytes_and_flows_older_than_a_minute() -> None:
    w = ShareWindow(window=60.0)
    w.observe([_flow(1, 0, 1000, owner=None)], 0.0)
    w.observe([_flow(2, 0, 10)], 30.0)
    assert w.observe([_flow(2, 0, 20)], 61.0) == NamedShare(bytes_known=20, flows_known=1)
    assert w.observe([], 200.0) == NamedShare()
    assert NamedShare().bytes_share() is None and NamedShare().flows_share() is None


def test_a_restarted_flow_counts_from_zero() -> None:
    w = ShareWindow()
    w.observe([_flow(1, 500, 500)], 0.0)
    assert w.observe([_flow(1, 10, 0)], 1.0).bytes_known == 1010


def test_idle_flows_with_last_ticks_versions_stay_counted_past_the_window() -> None:
    # 1,000 idle connections: every tick has the same versions; they stay in the share
    # (still seen) and no byte is counted twice.
    w = ShareWindow(window=60.0)
    flows = [_flow(p, 5, 5, serial=p, rev=1) for p in range(1, 1001)]
    first = w.observe(flows, 0.0)
    assert first == NamedShare(bytes_known=10_000, flows_known=1000)
    for t in range(1, 120):
        share = w.observe(flows, float(t))
    assert share == NamedShare(flows_known=1000)  # the bytes moved two minutes ago


def _reference(window: float, ticks: list[tuple[float, list[EnrichedFlow]]]) -> NamedShare:
    """The share computed from scratch: every flow of every tick looked at (the module's
    meaning, without its shortcut for flows of last tick's version)."""
    from netwatch.flows.share import owner_class

    last: dict[object, tuple[int, int]] = {}
    seen: dict[object, tuple[float, int]] = {}
    moved: list[tuple[float, int, int]] = []
    now = 0.0
    for now, flows in ticks:
        for ef in flows:
            f = ef.flow
            sent, received = f.bytes_sent or 0, f.bytes_received or 0
            ps, pr = last.get(f.key, (0, 0))
            n = (sent - ps if sent >= ps else sent) + (
                received - pr if received >= pr else received
            )
            moved.append((now, owner_class(f), n))
            last[f.key] = (sent, received)
            seen[f.key] = (now, owner_class(f))
        for key in [k for k, (at, _) in seen.items() if at < now - window]:
            del seen[key]
            last.pop(key, None)
    totals, counts = [0, 0, 0], [0, 0, 0]
    for at, klass, n in moved:
        if at >= now - window:
            totals[klass] += n
    for _, klass in seen.values():
        counts[klass] += 1
    return NamedShare(*totals, *counts)


@given(
    st.lists(
        st.tuples(
            st.integers(min_value=1, max_value=40),
            st.lists(st.sampled_from(["gone", "same", "grow", "owner"]), min_size=4, max_size=4),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_looking_only_at_new_versions_gives_the_share_of_looking_at_all(
    steps: list[tuple[int, list[str]]],
) -> None:
    """Flows of last tick's version are not looked at again; the share must be what
    looking at every flow every tick gives, through flows that stay, grow, change owner,
    leave and come back, and the window's expiry."""
    state = {port: [0, 100, 10, "curl"] for port in range(1, 5)}  # rev, sent, received, owner
    w = ShareWindow(window=60.0)
    fed, tracker = ShareWindow(window=60.0), ChangeTracker()  # handed the engine's changes
    ticks: list[tuple[float, list[EnrichedFlow]]] = []
    now = 0.0
    for dt, ops in steps:
        now += dt
        flows = []
        for port, op in zip(range(1, 5), ops, strict=True):
            s = state[port]
            if op == "gone":
                continue
            if op == "grow":
                s[0], s[1], s[2] = s[0] + 1, s[1] + 7 * port, s[2] + 3
            elif op == "owner":
                s[0], s[3] = s[0] + 1, (None if s[3] == "curl" else "curl")
            flows.append(_flow(port, s[1], s[2], owner=s[3], serial=port, rev=s[0]))  # type: ignore[arg-type]
        ticks.append((now, flows))
        want = _reference(60.0, ticks)
        assert w.observe(flows, now) == want, (now, ops)
        assert fed.observe(flows, now, tracker.step(flows)) == want, (now, ops)
