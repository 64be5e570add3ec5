"""The SQLite store: one writer connection in WAL mode, alerts, flow summaries, facts.

Durability choice: `synchronous=FULL`. In WAL mode NORMAL already survives a killed process
(SIGKILL), but can lose the last commits on power loss; the daemon promises that an alert it
has announced is on disk, and it commits at most a few times a second, so one fsync per commit
is cheap and FULL keeps the promise through power loss too.

One connection writes (the daemon loop and the background pruner share it under a lock);
readers (`netwatch export`) open their own read-only connection. Files are created 0640, owned
by the `netwatch` group when it exists, else 0600. Only this package imports sqlite3.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from netwatch import codec, files
from netwatch.errors import DataFileError
from netwatch.model import Alert, EnrichedFlow, Severity
from netwatch.model.versions import UNNUMBERED, Version
from netwatch.store.migrations import SchemaTooNewError, migrate
from netwatch.store.rollup import Away, Dims, UsageAnswer, UsageQuery, UsageRow, UsageTotal
from netwatch.store.usage import (
    TooManyGroupsError,
    load_dims,
    query_usage,
    usage_bounds,
    write_usage,
)

WAL_LIMIT = 1024 * 1024
"""Bytes of write-ahead log before SQLite checkpoints it into the file, and the size the log
is cut back to afterwards (`journal_size_limit`): without the cut a WAL keeps its largest
size forever, outside any cap on the database."""


@dataclass(frozen=True, slots=True)
class AlertQuery:
    """Which alerts to read: a time window on `last_seen`/`first_seen`, severity, rule."""

    since: float | None = None
    until: float | None = None
    min_severity: Severity | None = None
    rule: str | None = None


def flow_key_text(ef: EnrichedFlow) -> str:
    """The summary row key: transport and both endpoints (one row per conversation)."""
    k = ef.flow.key
    return f"{k.transport.value} {k.local} {k.remote or '-'}"


def _create_private(path: Path) -> None:
    """Create the db file (and its folders) so that only root and the netwatch group read it.

    SQLite gives the -wal and -shm files the mode and owner of the database file, so setting
    them here covers all three.
    """
    files.make_dirs(path.parent, shared=True)
    if not path.exists():
        files.ensure_file(path, shared=True)


def _wrap(path: Path, exc: Exception) -> DataFileError:
    """One line (SQLite's own messages may quote a damaged schema across lines)."""
    if isinstance(exc, sqlite3.OperationalError) and str(exc) == "interrupted":
        return DataFileError(f"{path}: the query took longer than its time limit")
    return DataFileError(f"{path}: not a usable netwatch database ({' '.join(str(exc).split())})")


class Store:
    """The writer. Every public method is one transaction and thread-safe."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()
        self._size_watch: tuple[int, Callable[[], None]] | None = None
        """(limit in bytes, what to call past it), from `watch_size`."""
        self._dim_ids: dict[Dims, int] | None = None
        """Usage dims by value -> id, loaded at the first usage write; the pruner clears it
        when it deletes dims (`forget_dims`)."""
        self._written: dict[Version, str] = {}
        """Flow versions whose whole row the last `save_flows` wrote -> their row key."""
        try:
            _create_private(path)
            self._conn = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=10.0
            )
            self._setup()
            # Opened now (the daemon may give up root later): see `Reader`.
            query = sqlite3.connect(
                f"file:{path}?mode=ro", uri=True, check_same_thread=False, timeout=10.0
            )
            query.execute("SELECT count(*) FROM sqlite_master").fetchone()  # opens -wal, -shm
            self._reader = Reader(path, query)
        except (sqlite3.Error, SchemaTooNewError, UnicodeDecodeError) as exc:
            raise _wrap(path, exc) from None
        except OSError as exc:
            raise DataFileError(f"cannot open database {path}: {exc.strerror or exc}") from None

    def _setup(self) -> None:
        c = self._conn
        if int(c.execute("PRAGMA user_version").fetchone()[0]) == 0:
            # Only takes effect before the first table exists; lets pruning return pages.
            c.execute("PRAGMA auto_vacuum = INCREMENTAL")
        mode = c.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"cannot switch to WAL (journal_mode={mode})")
        c.execute("PRAGMA synchronous = FULL")
        c.execute("PRAGMA foreign_keys = ON")
        c.execute(f"PRAGMA journal_size_limit = {WAL_LIMIT}")
        page = int(c.execute("PRAGMA page_size").fetchone()[0])
        c.execute(f"PRAGMA wal_autocheckpoint = {max(1, WAL_LIMIT // page)}")
        migrate(c)

    def reader(self) -> Reader:
        """The store's read-only connection for history requests (one user at a time)."""
        return self._reader

    def close(self) -> None:
        """Checkpoint and close; the WAL is folded back into the main file."""
        self._reader.close()
        with self.lock:
            # Busy readers: the WAL stays and is replayed on next open.
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._conn.close()

    # ------------------------------------------------------------------ writes

    def save_alerts(self, alerts: Iterable[Alert], now: float) -> int:
        """Insert or update alerts by id with their evidence; returns after the commit."""
        return self.save_tick(alerts, {}, now)

    def save_tick(
        self, alerts: Iterable[Alert], facts: Mapping[str, Iterable[tuple[str, float]]], now: float
    ) -> int:
        """Commit one tick's alerts and the facts learned with them in one transaction."""
        rows = list(alerts)
        fact_rows = [(k, s, t, t) for k, items in facts.items() for s, t in items]
        if not rows and not fact_rows:
            return 0
        with self._writing():
            for a in rows:
                self._upsert_alert(a, now)
            if fact_rows:
                self._conn.executemany(_FACT_UPSERT, fact_rows)
        return len(rows)

    def _upsert_alert(self, a: Alert, now: float) -> None:
        c = self._conn
        c.execute(
            """INSERT INTO alerts (id, rule_id, title, severity, severity_rank, identifier,
                   message, first_seen, last_seen, count, state, process_name, process_exe,
                   remote_ip, country, stored_at, record)
               VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
               ON CONFLICT (id) DO UPDATE SET
                   title=excluded.title, severity=excluded.severity,
                   severity_rank=excluded.severity_rank, message=excluded.message,
                   first_seen=min(first_seen, excluded.first_seen),
                   last_seen=max(last_seen, excluded.last_seen), count=excluded.count,
                   state=excluded.state, process_name=excluded.process_name,
                   process_exe=excluded.process_exe, remote_ip=excluded.remote_ip,
                   country=excluded.country, stored_at=excluded.stored_at,
                   record=excluded.record""",
            (
                a.id,
                a.rule_id,
                a.title,
                a.severity.value,
                a.severity.rank,
                a.identifier,
                a.message,
                a.first_seen,
                a.last_seen,
                a.count,
                a.state.value,
                a.process.name if a.process else None,
                a.process.exe if a.process else None,
                str(a.remote.ip) if a.remote else None,
                a.remote.country if a.remote else None,
                now,
                codec.dumps(a),
            ),
        )
        c.execute("DELETE FROM alert_evidence WHERE alert_id = ?", (a.id,))
        c.executemany(
            "INSERT INTO alert_evidence (alert_id, position, name, value) VALUES (?,?,?,?)",
            [(a.id, i, e.name, e.value) for i, e in enumerate(a.evidence)],
        )

    def save_flows(
        self,
        flows: Iterable[tuple[EnrichedFlow, float, float]],
        usage: Sequence[UsageRow] = (),
    ) -> int:
        """Upsert flow summaries `(flow, first_seen, last_seen)` (first_seen never moves later)
        and add usage rollup rows, in one transaction.

        Incremental: a flow whose version (equal versions promise equal values) had its whole
        row written by the last call has only its times moved (`_TOUCH`): writing the same
        values again through the upsert's coalesce and max changes nothing else. At 10,000
        idle connections that is most rows of the daemon's 30-second flush, and building a
        whole row (addresses as text) was most of its ~230 ms. Where that cannot be exact,
        every row is written whole: a row gone since (the pruner), or a key written twice in
        one call (the order of the two writes decides the row). What a call wrote is
        remembered only once its transaction committed."""
        written, self._written = self._written, {}
        kept: dict[Version, str] = {}
        rows: list[tuple[object, ...]] = []
        touched: list[tuple[EnrichedFlow, float, float, str]] = []
        for ef, first, last in flows:
            v = ef.version
            text = written.get(v) if v != UNNUMBERED else None
            if text is None:
                row = _flow_row(ef, first, last)
                rows.append(row)
                text = cast(str, row[0])
            else:
                touched.append((ef, first, last, text))
            if v != UNNUMBERED:
                kept[v] = text
        total = len(rows) + len(touched)
        if not total and not usage:
            return 0
        with self._writing():
            if usage:
                if self._dim_ids is None:
                    self._dim_ids = load_dims(self._conn)
                write_usage(self._conn, self._dim_ids, usage)
            if touched:
                before = self._conn.total_changes
                if len({t[3] for t in touched} | {r[0] for r in rows}) == len(touched) + len(rows):
                    self._conn.executemany(_TOUCH, [(t[1], t[2], t[3]) for t in touched])
                if self._conn.total_changes - before != len(touched):
                    rows.extend(_flow_row(ef, first, last) for ef, first, last, _ in touched)
            if rows:
                self._upsert_flows(rows)
        self._written = kept
        return total

    def _upsert_flows(self, rows: list[tuple[object, ...]]) -> None:
        """Write whole summary rows (inside the caller's transaction)."""
        self._conn.executemany(
            """INSERT INTO flows (flow_key, transport, local_ip, local_port, remote_ip,
                       remote_port, direction, process_name, process_exe, pid, country, asn,
                       as_org, app, category, vpn, bytes_sent, bytes_received, first_seen,
                       last_seen)
                   VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
                   ON CONFLICT (flow_key) DO UPDATE SET
                       direction=excluded.direction,
                       process_name=coalesce(excluded.process_name, process_name),
                       process_exe=coalesce(excluded.process_exe, process_exe),
                       pid=coalesce(excluded.pid, pid),
                       country=coalesce(excluded.country, country),
                       asn=coalesce(excluded.asn, asn), as_org=coalesce(excluded.as_org, as_org),
                       app=coalesce(excluded.app, app),
                       category=coalesce(excluded.category, category),
                       vpn=max(vpn, excluded.vpn),
                       bytes_sent=max(coalesce(bytes_sent, 0), coalesce(excluded.bytes_sent, 0)),
                       bytes_received=max(coalesce(bytes_received, 0),
                                          coalesce(excluded.bytes_received, 0)),
                       first_seen=min(first_seen, excluded.first_seen),
                       last_seen=max(last_seen, excluded.last_seen)""",
            rows,
        )

    def forget_dims(self) -> None:
        """Drop the dims cache (hold `lock`): the pruner deleted dims rows."""
        self._dim_ids = None

    def usage(self, query: UsageQuery) -> list[UsageTotal]:
        """Usage totals on the writer connection (tests on a live store)."""
        with self.lock:
            return query_usage(self._conn, query)[0]

    def record_facts(self, kind: str, subjects: Iterable[tuple[str, float]]) -> None:
        """Remember `(subject, seen_at)` facts of one kind (e.g. processes that connected)."""
        rows = [(kind, s, t, t) for s, t in subjects]
        if not rows:
            return
        with self._writing():
            self._conn.executemany(_FACT_UPSERT, rows)

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """Hold the lock for one transaction, then see whether the file passed its size limit.

        The check is two header reads, so every commit makes it: the pruner hears of the
        overshoot at once instead of at its next period (`watch_size`).
        """
        with self.lock:
            with _Transaction(self._conn):
                yield
            watch = self._size_watch
            if watch is not None and file_bytes(self._conn) > watch[0]:
                watch[1]()

    def watch_size(self, limit: int, over: Callable[[], None]) -> None:
        """Call `over` after any commit that leaves the file larger than `limit` bytes."""
        self._size_watch = (limit, over)

    # ------------------------------------------------------------------ reads (writer side)

    def facts(self, kind: str) -> dict[str, float]:
        """Every remembered subject of `kind` with its first-seen time."""
        with self.lock:
            cur = self._conn.execute(
                "SELECT subject, first_seen FROM facts WHERE kind = ?", (kind,)
            )
            return {str(s): float(t) for s, t in cur}

    def all_facts(self) -> dict[str, dict[str, float]]:
        """Every remembered fact, by kind."""
        out: dict[str, dict[str, float]] = {}
        with self.lock:
            for kind, subject, first in self._conn.execute(
                "SELECT kind, subject, first_seen FROM facts"
            ):
                out.setdefault(str(kind), {})[str(subject)] = float(first)
        return out

    def alerts(self, query: AlertQuery = AlertQuery()) -> list[Alert]:
        """The alerts matching `query`, oldest first (also used by tests on a live store)."""
        with self.lock:
            return list(select_alerts(self._conn, query))

    def connection_for_pruning(self) -> sqlite3.Connection:
        """The writer connection, for `retention.Pruner` (hold `lock` while using it)."""
        return self._conn


def file_bytes(conn: sqlite3.Connection) -> int:
    """The database's size in bytes once its log is checkpointed: pages times page size."""
    pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
    return pages * int(conn.execute("PRAGMA page_size").fetchone()[0])


_FACT_UPSERT = """INSERT INTO facts (kind, subject, first_seen, last_seen) VALUES (?,?,?,?)
    ON CONFLICT (kind, subject) DO UPDATE SET
        first_seen=min(first_seen, excluded.first_seen),
        last_seen=max(last_seen, excluded.last_seen)"""


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolling back on any error."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self._conn.execute("COMMIT")
        else:
            self._conn.execute("ROLLBACK")


_TOUCH = """UPDATE flows SET first_seen = min(first_seen, ?), last_seen = max(last_seen, ?)
             WHERE flow_key = ?"""
"""A summary row's times, for a flow whose other values the row already holds."""


def _flow_row(ef: EnrichedFlow, first: float, last: float) -> tuple[object, ...]:
    f, r = ef.flow, ef.remote
    k = f.key
    return (
        flow_key_text(ef),
        k.transport.value,
        str(k.local.ip),
        k.local.port,
        None if k.remote is None else str(k.remote.ip),
        None if k.remote is None else k.remote.port,
        f.direction.value,
        f.process.name if f.process else None,
        f.process.exe if f.process else None,
        f.process.pid if f.process else None,
        r.country if r else None,
        r.asn if r else None,
        r.as_org if r else None,
        f.label.name if f.label else None,
        f.label.category if f.label else None,
        int(bool(f.label and f.label.vpn)),
        f.bytes_sent,
        f.bytes_received,
        first,
        last,
    )


def select_alerts(conn: sqlite3.Connection, query: AlertQuery) -> Iterator[Alert]:
    """Run an alert query on any connection and decode each stored record through `codec`."""
    where: list[str] = []
    args: list[str | float] = []
    if query.since is not None:
        where.append("last_seen >= ?")
        args.append(query.since)
    if query.until is not None:
        where.append("first_seen <= ?")
        args.append(query.until)
    if query.min_severity is not None:
        where.append("severity_rank >= ?")
        args.append(query.min_severity.rank)
    if query.rule is not None:
        where.append("rule_id = ?")
        args.append(query.rule)
    sql = "SELECT record FROM alerts"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY first_seen, id"
    for (record,) in conn.execute(sql, args):
        if not isinstance(record, str | bytes):  # a damaged row: NOT NULL is not re-checked
            raise codec.CodecError(f"stored alert record is {type(record).__name__}, not JSON")
        alert = codec.loads(record)
        if isinstance(alert, Alert):
            yield alert


def open_reader(path: Path) -> sqlite3.Connection:
    """Open the store read-only (export); a missing or foreign file is one clear error."""
    if not path.exists():
        raise DataFileError(f"no netwatch database at {path}")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10.0)
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    except (sqlite3.Error, UnicodeDecodeError) as exc:
        raise _wrap(path, exc) from None
    if version == 0:
        conn.close()
        raise DataFileError(f"{path}: not a netwatch database (no schema)")
    return conn


def read_alerts(path: Path, query: AlertQuery) -> Iterator[Alert]:
    """Stream the alerts of a store file matching `query` (used by `netwatch export`).

    The file is opened here, before the first alert is asked for, so a missing or foreign
    store fails before the caller has written anything (a CSV header, an output file).
    """
    return _stream_alerts(path, open_reader(path), query)


def _stream_alerts(path: Path, conn: sqlite3.Connection, query: AlertQuery) -> Iterator[Alert]:
    try:
        yield from select_alerts(conn, query)
    except (sqlite3.Error, UnicodeDecodeError) as exc:  # a damaged page can hold any bytes
        raise _wrap(path, exc) from None
    except codec.CodecError as exc:
        raise DataFileError(f"{path}: a damaged alert record ({exc.message})") from None
    finally:
        conn.close()


def read_usage(path: Path, query: UsageQuery) -> UsageAnswer:
    """Usage totals of a store file (`netwatch history`, the dashboard's history screen).

    A store written before the usage tables existed (schema 1) has no history yet: an empty
    answer, not an error (the daemon migrates it when it next opens the file).
    """
    conn = open_reader(path)
    try:
        return _usage(conn, path, query)
    finally:
        conn.close()


def _usage(
    conn: sqlite3.Connection, path: Path, query: UsageQuery, max_groups: int | None = None
) -> UsageAnswer:
    try:
        if not _has_usage(conn):
            return UsageAnswer([], [], False)
        return UsageAnswer(*query_usage(conn, query, max_groups))
    except TooManyGroupsError as exc:
        raise DataFileError(str(exc)) from None
    except (sqlite3.Error, UnicodeDecodeError) as exc:
        raise _wrap(path, exc) from None
    except (TypeError, ValueError) as exc:  # a damaged row: a number column holding text
        raise DataFileError(f"{path}: a damaged usage row ({exc})") from None


def read_bounds(path: Path) -> tuple[int, int] | None:
    """[start, end) of a store file's usage history, or None when it has none."""
    conn = open_reader(path)
    try:
        return _bounds(conn, path)
    finally:
        conn.close()


def _bounds(conn: sqlite3.Connection, path: Path) -> tuple[int, int] | None:
    try:
        return usage_bounds(conn) if _has_usage(conn) else None
    except (sqlite3.Error, UnicodeDecodeError) as exc:
        raise _wrap(path, exc) from None
    except (TypeError, ValueError) as exc:
        raise DataFileError(f"{path}: a damaged usage row ({exc})") from None


def read_away(path: Path, since: float, kind: str = "first_seen") -> Away:
    """What happened since `since` (the dashboard's "while you were away"), from the facts the
    novelty rules keep (`program:<prog>`, `country:<prog>|CC`, kind `kind`) and the alerts."""
    conn = open_reader(path)
    try:
        return _away(conn, path, since, kind)
    finally:
        conn.close()


def _away(conn: sqlite3.Connection, path: Path, since: float, kind: str) -> Away:
    try:
        programs: list[tuple[str, float]] = []
        countries: dict[str, float] = {}
        for subject, first in conn.execute(
            "SELECT subject, first_seen FROM facts WHERE kind = ? AND "
            "(subject LIKE 'program:%' OR subject LIKE 'country:%')",
            (kind,),
        ):
            text, when = str(subject), float(first)
            if text.startswith("program:"):
                if when >= since:
                    programs.append((text.removeprefix("program:"), when))
            else:
                cc = text.rpartition("|")[2]
                countries[cc] = min(when, countries.get(cc, when))
        alerts = tuple(select_alerts(conn, AlertQuery(since=since)))
    except (sqlite3.Error, UnicodeDecodeError) as exc:
        raise _wrap(path, exc) from None
    except (TypeError, ValueError) as exc:
        raise DataFileError(f"{path}: a damaged fact row ({exc})") from None
    except codec.CodecError as exc:
        raise DataFileError(f"{path}: a damaged alert record ({exc.message})") from None
    return Away(
        since=since,
        programs=tuple(sorted(programs, key=lambda p: p[1])),
        countries=tuple(
            sorted(((c, t) for c, t in countries.items() if t >= since), key=lambda p: p[1])
        ),  # fmt: skip
        alerts=alerts,
    )


class Reader:
    """A read-only connection for the daemon's history requests, used by one thread (the
    history worker) at a time; every call may be given a time limit (seconds), past which
    SQLite interrupts it and the call is one `DataFileError` line.

    Opened with the store (`Store.reader`), so the daemon's analyzer has it after it gave up
    root, when it may no longer be allowed to open the file again by its path.
    """

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self._conn = conn

    def _limit(self, seconds: float | None) -> None:
        if seconds is None:
            self._conn.set_progress_handler(None, 0)
            return
        deadline = time.monotonic() + seconds
        self._conn.set_progress_handler(lambda: time.monotonic() > deadline, 10_000)

    def usage(
        self,
        query: UsageQuery,
        time_limit: float | None = None,
        max_groups: int | None = None,
    ) -> UsageAnswer:
        """`read_usage` on this connection (more than `max_groups` groups: one line)."""
        self._limit(time_limit)
        return _usage(self._conn, self.path, query, max_groups)

    def bounds(self, time_limit: float | None = None) -> tuple[int, int] | None:
        """`read_bounds` on this connection."""
        self._limit(time_limit)
        return _bounds(self._conn, self.path)

    def away(self, since: float, time_limit: float | None = None) -> Away:
        """`read_away` on this connection."""
        self._limit(time_limit)
        return _away(self._conn, self.path, since, "first_seen")

    def close(self) -> None:
        """Close the connection."""
        with contextlib.suppress(sqlite3.Error):
            self._conn.close()


def _has_usage(conn: sqlite3.Connection) -> bool:
    return (
        conn.execute(
            "SELECT 1 FROM sqlite_master WHERE name = 'usage' AND type = 'table'"
        ).fetchone()
        is not None
    )


def integrity_check(path: Path) -> str:
    """Return SQLite's `PRAGMA integrity_check` answer (`ok` when the file is sound)."""
    conn = open_reader(path)
    try:
        return "\n".join(str(r[0]) for r in conn.execute("PRAGMA integrity_check"))
    finally:
        conn.close()


def store_alerts(path: Path, alerts: Iterable[Alert], now: float) -> int:
    """Open (or create) the store at `path`, commit `alerts`, close: `analyze --db` uses it."""
    store = Store(path)
    try:
        return store.save_alerts(alerts, now)
    finally:
        store.close()


def dump_evidence(path: Path, alert_id: str) -> list[tuple[str, str]]:
    """The evidence rows stored for one alert, in order (for tests and debugging)."""
    conn = open_reader(path)
    try:
        cur = conn.execute(
            "SELECT name, value FROM alert_evidence WHERE alert_id = ? ORDER BY position",
            (alert_id,),
        )
        return [(str(n), str(v)) for n, v in cur]
    finally:
        conn.close()


__all__ = ["AlertQuery", "Store", "integrity_check", "read_alerts"]
