"""First-seen facts survive a restart: the real rule engine on the real store.

`process.first_connection` fires once for a program; after the store is closed and a new
engine is built on it (a daemon restart), the same program does not fire again, and a new
one still does.
"""

from __future__ import annotations

from pathlib import Path

from netwatch.detect.engine import RuleEngine
from netwatch.store import Store, StoredFirstSeen
from netwatch.store.first_seen import KIND
from tests.builders import T0, make_flow, make_process, make_remote


def _flow(name: str):  # type: ignore[no-untyped-def]
    return make_flow(
        remote_ip="198.51.100.7",
        process=make_process(name),
        remote=make_remote("198.51.100.7", country="NL"),
    )


def _fired(engine: RuleEngine, flows, now: float) -> list[str]:  # type: ignore[no-untyped-def]
    return sorted(
        a.process.name
        for a in engine.evaluate(flows, now)
        if a.rule_id == "process.first_connection" and a.process
    )


def test_first_connection_does_not_refire_after_restart(tmp_path: Path) -> None:
    path = tmp_path / "n.db"
    store = Store(path)
    seen = StoredFirstSeen(store)
    engine = RuleEngine(first_seen=seen)
    assert _fired(engine, [_flow("curl")], T0) == ["curl"]
    pending = seen.take_pending()
    assert ("program:/usr/bin/curl", T0) in pending
    store.save_tick([], {KIND: pending}, T0)
    store.close()

    store = Store(path)
    seen = StoredFirstSeen(store)
    assert seen.get("program:/usr/bin/curl") == T0
    engine = RuleEngine(first_seen=seen)
    assert _fired(engine, [_flow("curl"), _flow("wget")], T0 + 100) == ["wget"]
    store.close()


def test_uncommitted_facts_are_not_remembered(tmp_path: Path) -> None:
    """A crash before the tick's commit loses the fact together with its alert: it refires."""
    path = tmp_path / "n.db"
    store = Store(path)
    engine = RuleEngine(first_seen=StoredFirstSeen(store))
    assert _fired(engine, [_flow("curl")], T0) == ["curl"]
    store.close()  # no save_tick
    store = Store(path)
    engine = RuleEngine(first_seen=StoredFirstSeen(store))
    assert _fired(engine, [_flow("curl")], T0 + 5) == ["curl"]
    store.close()
