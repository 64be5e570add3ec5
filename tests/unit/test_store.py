"""The SQLite store: migrations, alert upserts with evidence, flow summaries, facts, retention."""

from __future__ import annotations

import json
import sqlite3
import stat
import time
from dataclasses import replace
from pathlib import Path

import pytest

from netwatch import codec
from netwatch.errors import DataFileError
from netwatch.model import Action, AlertState, EnrichedFlow, Evidence, Severity
from netwatch.store import AlertQuery, Retention, Store, integrity_check, prune, read_alerts
from netwatch.store.migrations import LATEST
from netwatch.store.sqlite import dump_evidence
from tests.builders import T0, make_alert, make_flow, make_label, make_process


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "state" / "netwatch.db")
    yield s  # type: ignore[misc]
    s.close()


def test_new_store_is_wal_full_and_migrated(store: Store) -> None:
    conn = sqlite3.connect(store.path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == LATEST
    assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental
    sync = store.connection_for_pruning().execute("PRAGMA synchronous").fetchone()[0]
    assert sync == 2  # FULL
    conn.close()


def test_db_file_is_private(store: Store) -> None:
    mode = stat.S_IMODE(store.path.stat().st_mode)
    assert mode & 0o007 == 0, oct(mode)


def test_reopen_keeps_data_and_does_not_remigrate(tmp_path: Path) -> None:
    path = tmp_path / "n.db"
    s = Store(path)
    s.save_alerts([make_alert()], now=T0)
    s.close()
    s2 = Store(path)
    assert [a.id for a in s2.alerts()] == ["vpngate.list_fetch:1"]
    s2.close()


def test_alert_round_trips_with_evidence_and_updates_by_id(store: Store) -> None:
    proc = make_process("vpnclient", pid=77)
    a = replace(make_alert(process=proc), evidence=(Evidence("sni", "x"), Evidence("n", "2")))
    store.save_alerts([a], now=T0)
    assert store.alerts() == [a]
    assert dump_evidence(store.path, a.id) == [("sni", "x"), ("n", "2")]
    later = replace(a, count=5, last_seen=T0 + 50, state=AlertState.CLOSED, evidence=())
    store.save_alerts([later], now=T0 + 50)
    got = store.alerts()
    assert got == [later]
    assert dump_evidence(store.path, a.id) == []


def test_alerts_stored_before_the_action_field_read_back_logged(tmp_path: Path) -> None:
    # Alerts are stored as codec records: an older netwatch marked a logged alert with a
    # `log` tag and no `action`. Build such a store file and read it with this one.
    path = tmp_path / "old.db"
    logged = replace(make_alert(), tags=("vpngate",), action=Action.LOG)
    s = Store(path)
    s.save_alerts([logged, replace(make_alert(), id="plain")], now=T0)
    s.close()
    old = codec.alert_to_dict(logged)
    del old["action"]
    old["tags"] = ["vpngate", "log"]
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE alerts SET record = ? WHERE id = ?", (json.dumps(old), logged.id))
    conn.close()
    s2 = Store(path)
    got = {a.id: a for a in s2.alerts()}
    s2.close()
    assert got[logged.id] == logged
    assert got["plain"].action is Action.ALERT
    assert {a.id: a.action for a in read_alerts(path, AlertQuery())}[logged.id] is Action.LOG


def test_queries_filter_by_time_severity_and_rule(store: Store) -> None:
    a1 = make_alert("r.one", Severity.LOW, first_seen=T0, alert_id="a1")
    a2 = make_alert("r.two", Severity.HIGH, first_seen=T0 + 100, alert_id="a2")
    a3 = make_alert("r.one", Severity.CRITICAL, first_seen=T0 + 200, alert_id="a3")
    store.save_alerts([a3, a1, a2], now=T0)
    ids = lambda q: [a.id for a in read_alerts(store.path, q)]  # noqa: E731
    assert ids(AlertQuery()) == ["a1", "a2", "a3"]
    assert ids(AlertQuery(since=T0 + 50)) == ["a2", "a3"]
    assert ids(AlertQuery(until=T0 + 150)) == ["a1", "a2"]
    assert ids(AlertQuery(min_severity=Severity.HIGH)) == ["a2", "a3"]
    assert ids(AlertQuery(rule="r.one")) == ["a1", "a3"]
    assert ids(AlertQuery(rule="r.one", min_severity=Severity.HIGH)) == ["a3"]


def test_flow_summaries_keep_first_seen_and_max_bytes(store: Store) -> None:
    f1 = make_flow(process=make_process("curl"), bytes_sent=10, label=make_label())
    f2 = make_flow(process=make_process("curl"), bytes_sent=500, bytes_received=9)
    store.save_flows([(f1, T0, T0 + 1)])
    store.save_flows([(f2, T0 + 5, T0 + 9)])
    row = (
        store.connection_for_pruning()
        .execute("SELECT first_seen, last_seen, bytes_sent, bytes_received, app, vpn FROM flows")
        .fetchall()
    )
    assert row == [(T0, T0 + 9, 500, 4200, "openvpn", 1)]


def test_facts_persist_and_keep_earliest(tmp_path: Path) -> None:
    path = tmp_path / "n.db"
    s = Store(path)
    s.record_facts("process", [("/usr/bin/curl", T0 + 10), ("/usr/bin/ssh", T0)])
    s.record_facts("process", [("/usr/bin/curl", T0)])
    s.close()
    s2 = Store(path)
    assert s2.facts("process") == {"/usr/bin/curl": T0, "/usr/bin/ssh": T0}
    assert s2.facts("country") == {}
    assert s2.all_facts() == {"process": {"/usr/bin/curl": T0, "/usr/bin/ssh": T0}}
    s2.close()


def test_retention_by_age(store: Store) -> None:
    old = make_alert(first_seen=T0, alert_id="old")
    new = make_alert(first_seen=T0 + 10_000, alert_id="new")
    store.save_alerts([old, new], now=T0)
    store.save_flows([(make_flow(local_port=1), T0, T0), (make_flow(local_port=2), T0, T0 + 9999)])
    removed = prune(store, Retention(max_age=5000, max_bytes=None), now=T0 + 12_000)
    assert removed == 2
    assert [a.id for a in store.alerts()] == ["new"]
    n = store.connection_for_pruning().execute("SELECT count(*) FROM flows").fetchone()[0]
    assert n == 1


def test_retention_by_size_drops_oldest_first(store: Store) -> None:
    msg = "x" * 2000
    alerts = [make_alert(first_seen=T0 + i, alert_id=f"a{i:04d}", message=msg) for i in range(600)]
    store.save_alerts(alerts, now=T0)
    prune(store, Retention(max_age=None, max_bytes=600_000), now=T0)
    kept = [a.id for a in store.alerts()]
    assert 0 < len(kept) < 600
    assert kept == [f"a{i:04d}" for i in range(600 - len(kept), 600)]
    assert integrity_check(store.path) == "ok"
    from netwatch.store.retention import TRIM, used_bytes

    assert used_bytes(store.connection_for_pruning()) <= 600_000 * TRIM


def test_garbage_file_is_one_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(DataFileError, match="not a usable netwatch database"):
        Store(bad)
    with pytest.raises(DataFileError):
        list(read_alerts(bad, AlertQuery()))


def test_missing_db_for_reading(tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match="no netwatch database"):
        list(read_alerts(tmp_path / "none.db", AlertQuery()))


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "n.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {LATEST + 1}")
    conn.close()
    with pytest.raises(DataFileError, match="newer"):
        Store(path)


def _on_disk(path: Path) -> int:
    """The store's bytes on disk: the database file and its write-ahead log."""
    wal = path.with_name(path.name + "-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def test_size_cap_holds_under_churn_and_a_lower_cap_shrinks_the_file(tmp_path: Path) -> None:
    from netwatch.store.retention import MARGIN, Pruner

    path = tmp_path / "n.db"
    store = Store(path)
    cap = 2 * 1024 * 1024
    pruner = Pruner(store, Retention(max_age=None, max_bytes=cap), lambda: T0)
    pruner.start()
    msg = "x" * 2000
    peak = 0
    deadline = time.monotonic() + 120  # a bound for a very busy machine; ~3 s when idle
    # ~7 MB of alerts and flow summaries: the cap is passed several times over.
    for i in range(1500):
        a = make_alert(first_seen=T0 + i, alert_id=f"a{i:05d}", message=msg)
        store.save_alerts([a], now=T0 + i)
        if i % 100 == 0:
            flows = [make_flow(local_port=1 + (i + j) % 60000) for j in range(100)]
            store.save_flows([(f, T0 + i, T0 + i) for f in flows])
        peak = max(peak, _on_disk(path))
        time.sleep(0.0002)  # a writer that pauses, as the daemon loop does between ticks
        assert time.monotonic() < deadline
    pruner.stop()
    assert peak <= cap + MARGIN, (peak, cap + MARGIN)
    assert integrity_check(path) == "ok"
    newest = store.alerts()[-1].id
    store.close()
    before = _on_disk(path)

    store = Store(path)
    lower = 1024 * 1024
    prune(store, Retention(max_age=None, max_bytes=lower), now=T0)  # the pass at start
    assert _on_disk(path) <= lower < before
    assert store.alerts()[-1].id == newest
    store.close()
    assert integrity_check(path) == "ok"


def test_incremental_flow_flush_writes_the_rows_a_whole_flush_writes(tmp_path: Path) -> None:
    """A flow whose version's whole row the last call wrote only has its times moved; the
    rows equal those of a store that writes every row whole (unnumbered copies), through a
    changed flow, a new one, a flow seen from earlier, a row the pruner deleted, and one key
    written twice in a call."""
    from netwatch.flows.serials import fresh_rev, new_serial

    def numbered(ef: EnrichedFlow) -> EnrichedFlow:
        flow = replace(ef.flow, serial=new_serial(), rev_facts=fresh_rev(), rev_traffic=1)
        return replace(ef, flow=flow)

    def unnumbered(ef: EnrichedFlow) -> EnrichedFlow:
        return replace(ef, flow=replace(ef.flow, serial=0, rev_facts=0, rev_traffic=0))

    inc, whole = Store(tmp_path / "inc.db"), Store(tmp_path / "whole.db")
    statements: list[str] = []
    inc._conn.set_trace_callback(statements.append)
    a = numbered(make_flow(local_port=1, process=make_process("curl"), label=make_label()))
    b = numbered(make_flow(local_port=2, bytes_sent=10))
    c = numbered(make_flow(local_port=3, process=None))
    b2 = replace(b, flow=replace(b.flow, bytes_sent=900, process=None, rev_traffic=fresh_rev()))
    d = numbered(make_flow(local_port=4))
    a_again = replace(a, flow=replace(a.flow, bytes_received=1, rev_traffic=fresh_rev()))
    calls = [
        [(a, T0, T0 + 30), (b, T0, T0 + 30), (c, T0, T0 + 30)],
        [(a, T0 - 5, T0 + 60), (b2, T0 + 30, T0 + 60), (d, T0 + 31, T0 + 60)],
        [(a, T0 + 60, T0 + 90), (b2, T0 + 60, T0 + 70), (d, T0 + 60, T0 + 90)],
        [(a, T0 + 90, T0 + 120), (d, T0 + 90, T0 + 100)],  # after a's row was deleted
        [(d, T0 + 120, T0 + 150), (a_again, T0 + 120, T0 + 150), (a, T0, T0 + 150)],
    ]
    touched = []
    for i, call in enumerate(calls):
        if i == 3:
            for s in (inc, whole):
                s.connection_for_pruning().execute("DELETE FROM flows WHERE local_port = 1")
        statements.clear()
        inc.save_flows(call)
        whole.save_flows([(unnumbered(ef), first, last) for ef, first, last in call])
        touched.append(sum(s.startswith("UPDATE flows SET first_seen") for s in statements))
        rows = "SELECT * FROM flows ORDER BY flow_key"
        got = inc.connection_for_pruning().execute(rows).fetchall()
        assert got == whole.connection_for_pruning().execute(rows).fetchall(), i
    # a in the 2nd call; a, b2, d in the 3rd; the 4th tried a and d (a's row was gone: all
    # whole); the 5th writes a key twice, so everything whole.
    assert touched == [0, 1, 3, 2, 0]
    inc.close()
    whole.close()


def test_a_flush_that_failed_is_not_taken_as_written(tmp_path: Path) -> None:
    """A flow version whose flush rolled back (here a trigger aborts it, as a full disk
    would) is written whole by the next flush, not taken as already in its row."""
    from netwatch.flows.serials import fresh_rev, new_serial

    store = Store(tmp_path / "n.db")
    a1 = make_flow(local_port=1, bytes_sent=10)
    a1 = replace(a1, flow=replace(a1.flow, serial=new_serial(), rev_facts=fresh_rev()))
    a2 = replace(a1, flow=replace(a1.flow, bytes_sent=500, rev_traffic=fresh_rev()))
    store.save_flows([(a1, T0, T0 + 30)])
    conn = store.connection_for_pruning()
    conn.execute(
        "CREATE TRIGGER full_disk BEFORE UPDATE ON flows BEGIN SELECT RAISE(ABORT, 'full'); END"
    )
    with pytest.raises(sqlite3.DatabaseError):
        store.save_flows([(a2, T0, T0 + 60)])
    conn.execute("DROP TRIGGER full_disk")
    store.save_flows([(a2, T0, T0 + 90)])
    row = conn.execute("SELECT bytes_sent, last_seen FROM flows").fetchall()
    assert row == [(500, T0 + 90)]
    store.close()
