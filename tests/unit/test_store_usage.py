"""Usage history: rollups from tick deltas (pure), the usage tables, downsampling, retention."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from netwatch.errors import DataFileError
from netwatch.model import EnrichedFlow
from netwatch.store import Retention, Store, prune
from netwatch.store.migrations import LATEST, MIGRATIONS
from netwatch.store.rollup import DAY, HOUR, SPAN, Rollups, UsageQuery, UsageRow
from netwatch.store.sqlite import read_usage
from tests.builders import T0, make_flow, make_process, make_remote

BASE = 1_700_002_800  # a whole hour (T0 is not)
assert BASE % HOUR == 0


def numbered(ef: EnrichedFlow, serial: int, rev: int, sent: int, received: int) -> EnrichedFlow:
    """The flow as the engine hands it on: a serial and a traffic revision with its counters."""
    f = replace(ef.flow, bytes_sent=sent, bytes_received=received)
    object.__setattr__(f, "serial", serial)
    object.__setattr__(f, "rev_traffic", rev)
    object.__setattr__(f, "rev_facts", 1)
    return replace(ef, flow=f)


CURL = make_flow(process=make_process("curl"), local_port=1001)
SSH = make_flow(
    process=make_process("ssh"), local_port=1002, remote_ip="203.0.113.9",
    remote=make_remote("203.0.113.9", country="JP", asn=64500, as_org="Example JP"),
)  # fmt: skip


def totals(rows: list[UsageRow]) -> dict[str | None, tuple[int, int, int]]:
    out: dict[str | None, tuple[int, int, int]] = {}
    for r in rows:
        o, i, c = out.get(r.dims[0], (0, 0, 0))
        out[r.dims[0]] = (o + r.bytes_out, i + r.bytes_in, c + r.connections)
    return out


def test_first_tick_is_a_baseline_then_deltas_by_serial() -> None:
    book = Rollups()
    book.add([numbered(CURL, 1, 1, 1000, 5000)], BASE + 1)
    assert book.take() == []  # open before the start: its past traffic is not this minute's
    book.add([numbered(CURL, 1, 2, 1500, 9000), numbered(SSH, 2, 3, 10, 20)], BASE + 2)
    rows = book.take()
    assert totals(rows) == {"curl": (500, 4000, 0), "ssh": (10, 20, 1)}
    assert {r.bucket for r in rows} == {BASE} and {r.span for r in rows} == {SPAN}
    ssh = next(r for r in rows if r.dims[0] == "ssh")
    assert ssh.dims == ("ssh", "/usr/bin/ssh", "203.0.113.9", "JP", 64500, "Example JP", None,
                        "tcp", None)  # fmt: skip


def test_unchanged_traffic_revision_is_not_counted_again_and_minutes_split() -> None:
    book = Rollups()
    book.add([], BASE)
    book.add([numbered(CURL, 1, 1, 100, 100)], BASE + 10)
    # Same revision: by the contract the same counters, whatever the object says.
    book.add([numbered(CURL, 1, 1, 999_999, 999_999)], BASE + 20)
    book.add([numbered(CURL, 1, 2, 150, 300)], BASE + 70)
    rows = book.take()
    assert [(r.bucket, r.bytes_out, r.bytes_in, r.connections) for r in rows] == [
        (BASE, 100, 100, 1),
        (BASE + 60, 50, 200, 0),
    ]


def test_a_counter_that_went_down_counts_from_zero_and_a_new_serial_is_a_new_connection() -> None:
    book = Rollups()
    book.add([], BASE)
    book.add([numbered(CURL, 1, 1, 100, 100)], BASE + 1)
    book.add([numbered(CURL, 1, 2, 30, 40)], BASE + 2)
    book.add([numbered(CURL, 7, 3, 5, 5)], BASE + 3)  # gone and back: a new serial
    assert totals(book.take()) == {"curl": (135, 145, 2)}


def test_unnumbered_flows_are_followed_by_key_and_listeners_skipped() -> None:
    book = Rollups()
    listen = make_flow(remote_ip=None, process=make_process("sshd"), bytes_sent=9)
    book.add([listen], BASE)
    book.add([listen, replace(CURL, flow=replace(CURL.flow, bytes_sent=10))], BASE + 1)
    book.add([listen, replace(CURL, flow=replace(CURL.flow, bytes_sent=25))], BASE + 2)
    assert totals(book.take()) == {"curl": (25, 4200, 1)}


def _fill(store: Store) -> None:
    book = Rollups()
    book.add([], BASE)
    # curl: 100 out per minute for 3 hours; ssh: one burst in the second hour.
    for m in range(180):
        flows = [numbered(CURL, 1, m + 1, 100 * (m + 1), 0)]
        if m == 90:
            flows.append(numbered(SSH, 2, 1000, 7, 70_000))
        book.add(flows, BASE + m * 60 + 5)
    store.save_flows([], book.take())


def test_store_answers_by_process_country_and_hour(tmp_path: Path) -> None:
    store = Store(tmp_path / "n.db")
    _fill(store)
    store.close()
    by_proc = read_usage(tmp_path / "n.db", UsageQuery(by="process")).totals
    assert [(t.key, t.bytes_out, t.bytes_in, t.connections) for t in by_proc] == [
        (("ssh", "/usr/bin/ssh"), 7, 70_000, 1),
        (("curl", "/usr/bin/curl"), 18_000, 0, 1),
    ]
    by_country = read_usage(tmp_path / "n.db", UsageQuery(by="country")).totals
    assert {t.key: t.total for t in by_country} == {("JP",): 70_007, ("RU",): 18_000}
    hours = read_usage(tmp_path / "n.db", UsageQuery(by="hour", process="curl")).totals
    assert [(t.key, t.bytes_out) for t in hours] == [
        ((BASE,), 6000), ((BASE + HOUR,), 6000), ((BASE + 2 * HOUR,), 6000)
    ]  # fmt: skip
    window = UsageQuery(by="process", since=BASE + HOUR, until=BASE + 2 * HOUR, country="ru")
    got = read_usage(tmp_path / "n.db", window)
    assert [(t.key[0], t.bytes_out) for t in got.totals] == [("curl", 6000)]
    assert got.spans == [HOUR]  # a whole hour is read from its hour row
    half = UsageQuery(by="process", since=BASE + HOUR + 1800, until=BASE + 2 * HOUR + 600)
    got = read_usage(tmp_path / "n.db", half)
    assert [(t.key[0], t.bytes_out) for t in got.totals] == [("ssh", 7), ("curl", 4000)]
    assert got.spans == [SPAN]


def test_a_window_is_read_as_days_hours_and_minutes() -> None:
    from netwatch.store.usage import plan

    day = 86400 * 20_000
    got = plan(day - 2 * HOUR - 120, day + 86400 + HOUR + 60, oldest_minute=0)
    assert got == [
        (SPAN, day - 2 * HOUR - 120, day - 2 * HOUR),
        (SPAN, day + 86400 + HOUR, day + 86400 + HOUR + 60),
        (HOUR, day - 2 * HOUR, day),
        (HOUR, day + 86400, day + 86400 + HOUR),
        (86400, day, day + 86400),
    ]
    # Minutes gone at the start: its hour row counts whole; by hour: no day rows.
    got = plan(day + 90, day + HOUR + 60, oldest_minute=day + HOUR, width=HOUR)
    assert got == [(SPAN, day + HOUR, day + HOUR + 60), (HOUR, day, day + HOUR)]
    assert plan(day + 60, day + 120, oldest_minute=None) == [(HOUR, day, day + HOUR)]


def test_minutes_go_after_hourly_after_and_age_pruning_drops_rows_and_dims(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "n.db")
    _fill(store)  # BASE is 23:00 UTC: the three hours span two days
    conn = store.connection_for_pruning()

    def spans() -> dict[int, int]:
        return dict(conn.execute("SELECT span, count(*) FROM usage GROUP BY span").fetchall())

    assert spans() == {SPAN: 181, HOUR: 4, DAY: 3}
    before = {t.key: t.total for t in store.usage(UsageQuery(by="process"))}
    prune(store, Retention(max_age=None, max_bytes=None, hourly_after=3600), BASE + 3 * HOUR)
    # Minutes of hours that ended an hour before BASE + 3h go (ssh's one too); curl's third
    # hour stays per minute. The sums are the hour rows'.
    assert spans() == {SPAN: 60, HOUR: 4, DAY: 3}
    assert {t.key: t.total for t in store.usage(UsageQuery(by="process"))} == before
    # Age: keep 90 minutes at BASE + 3h: the first hour and the first day ended before that.
    prune(store, Retention(max_age=5400, max_bytes=None, hourly_after=None), BASE + 3 * HOUR)
    left = {t.key[0]: t.total for t in store.usage(UsageQuery(by="process"))}
    assert left == {"curl": 12_000, "ssh": 70_007}
    prune(store, Retention(max_age=60, max_bytes=None, hourly_after=None), BASE + 2 * DAY)
    assert store.usage(UsageQuery(by="process")) == []
    assert conn.execute("SELECT count(*) FROM usage_dims").fetchone()[0] == 0
    _fill(store)  # the dims cache was dropped with the rows: new rows get new dims
    assert len(store.usage(UsageQuery(by="process"))) == 2
    store.close()


def test_size_cap_trims_the_oldest_usage_rows(tmp_path: Path) -> None:
    store = Store(tmp_path / "n.db")
    rows = [
        UsageRow(BASE + m * 60, SPAN, ("p", None, f"198.51.{i}.1", "US", 1, "o", None, "tcp", None),
                 1000, 1000, 0)
        for m in range(200) for i in range(50)
    ]  # fmt: skip
    store.save_flows([], rows)
    prune(store, Retention(max_age=None, max_bytes=200_000, hourly_after=None), BASE)
    conn = store.connection_for_pruning()
    n, oldest, newest = conn.execute(
        "SELECT count(*), min(bucket), max(bucket) FROM usage WHERE span = ?", (SPAN,)
    ).fetchone()
    assert 0 < n < 10_000  # detail goes first, oldest first; the sums stay
    assert newest == BASE + 199 * 60 and oldest > BASE
    day_sum = conn.execute("SELECT sum(bytes_out) FROM usage WHERE span = ?", (DAY,)).fetchone()
    assert day_sum == (200 * 50 * 1000,)
    store.close()


def test_a_schema_1_store_is_migrated_and_keeps_its_data(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(f"BEGIN;{MIGRATIONS[0]}PRAGMA user_version = 1;COMMIT;")
    conn.execute("INSERT INTO facts VALUES ('first_seen', 'program:/usr/bin/curl', ?, ?)", (T0, T0))
    conn.commit()
    conn.close()
    assert read_usage(path, UsageQuery()).totals == []  # readable before the daemon migrates
    store = Store(path)
    assert store.facts("first_seen") == {"program:/usr/bin/curl": T0}
    _fill(store)
    store.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == LATEST == 2
    conn.close()
    assert len(read_usage(path, UsageQuery()).totals) == 2


def test_a_damaged_usage_table_is_one_clear_line(tmp_path: Path) -> None:
    path = tmp_path / "n.db"
    store = Store(path)
    _fill(store)
    store.close()
    data = bytearray(path.read_bytes())
    page = 4096
    assert len(data) > 3 * page
    data[2 * page :] = b"\xff" * (len(data) - 2 * page)  # every page past the schema's
    path.write_bytes(bytes(data))
    with pytest.raises(DataFileError) as err:
        read_usage(path, UsageQuery())
    assert "\n" not in str(err.value) and str(path) in str(err.value)
    path.write_bytes(b"garbage" * 1000)
    with pytest.raises(DataFileError, match="not a usable netwatch database"):
        read_usage(path, UsageQuery())


def test_while_you_were_away_names_new_programs_new_countries_and_alerts(tmp_path: Path) -> None:
    from netwatch.store.sqlite import read_away
    from tests.builders import make_alert

    store = Store(tmp_path / "n.db")
    facts = [
        ("program:/usr/bin/a", T0 - 100), ("program:/usr/bin/b", T0 + 10),
        ("country:/usr/bin/a|US", T0 - 50), ("country:/usr/bin/b|RU", T0 + 20),
        ("country:/usr/bin/a|RU", T0 + 30), ("country:/usr/bin/b|US", T0 + 40),
        ("countries:/usr/bin/b", T0 + 10),
    ]  # fmt: skip
    store.save_tick(
        [make_alert(alert_id="old", first_seen=T0 - 500), make_alert(alert_id="new",
                                                                     first_seen=T0 + 5)],
        {"first_seen": facts},
        T0,
    )  # fmt: skip
    store.close()
    away = read_away(tmp_path / "n.db", T0)
    assert away.programs == (("/usr/bin/b", T0 + 10),)
    assert away.countries == (("RU", T0 + 20),)  # US was known before
    assert [a.id for a in away.alerts] == ["new"]


def test_conversations_that_left_are_forgotten() -> None:
    book = Rollups()
    for i in range(3000):  # one short conversation per tick, each a new serial
        book.add([numbered(CURL, 10 + i, 10 + i, 5, 5)], BASE + i)
    assert len(book._by_conversation) <= 2 + 1024  # noqa: SLF001  # the memory bound itself
    assert sum(r.connections for r in book.take()) == 2999  # the first tick is the baseline


def test_bytes_go_under_the_key_they_were_moved_by() -> None:
    from tests.builders import make_label

    book = Rollups()
    book.add([numbered(CURL, 1, 1, 0, 0)], BASE)
    book.add([numbered(CURL, 1, 2, 100, 0)], BASE + 1)
    labelled = numbered(replace(CURL, flow=replace(CURL.flow, label=make_label("tls"))), 1, 3,
                        150, 0)  # fmt: skip
    object.__setattr__(labelled.flow, "rev_facts", 2)  # the label is a fact: a new revision
    book.add([labelled], BASE + 2)
    got = {(r.dims[8], r.bytes_out) for r in book.take()}
    assert got == {(None, 100), ("tls", 50)}
