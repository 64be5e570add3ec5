"""Retention: delete old rows by age and keep the file under a size, in the background.

The pruner shares the store's single writer connection and takes its lock for one small batch
at a time, so the daemon loop never waits long behind it. Age applies to alerts, flow
summaries (by `last_seen`) and usage history (by the end of its bucket); size removes the
oldest flow summaries first, then the oldest usage rows (detail first: minutes, then hours,
then days), then the oldest alerts. Before that the pass deletes the usage minute rows older
than `hourly_after`: their hour rows, written with them, hold the same sums. First-seen
facts are kept (they are what makes "first connection" mean first) unless the size limit
needs their room too.

The size cap holds on disk, not only in used pages: the store tells the pruner after any
commit that leaves the file above `max_bytes` (`Store.watch_size`), the pruner trims the rows
to `TRIM` of the cap, gives every free page back to the file system (`incremental_vacuum`,
run to the end: Python's sqlite3 frees one page per step of the statement) and truncates the
write-ahead log. So the file and its log together stay within `max_bytes + MARGIN`, and a
lower cap shrinks the file at the next start (the first pass runs at once).
"""

from __future__ import annotations

import functools
import logging
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass

from netwatch.store import usage
from netwatch.store.rollup import DAY, HOUR, SPAN, SPANS
from netwatch.store.sqlite import WAL_LIMIT, Store, file_bytes

log = logging.getLogger("netwatch.store")

BATCH = 500
USAGE_BATCH = 5000
"""Usage rows per delete: ~20 bytes each, so a batch frees about as much as `BATCH` flows."""
SIZE_BATCH = 50
"""Rows per transaction when trimming to size: small, so little more than needed goes."""
TRIM = 0.9
"""Share of the size cap that trimming goes down to: the next trim waits for a tenth of the
cap of new rows, instead of a delete, vacuum and log truncation after every commit."""
VACUUM_PAGES = 256
"""Free pages given back per locked step (1 MiB at 4 KiB pages): the writer waits little."""
MARGIN = 2 * WAL_LIMIT
"""Bytes on disk above the cap: the write-ahead log (checkpointed at `WAL_LIMIT`) and the
rows written before the pruner, woken by the commit that passed the cap, trims them. A
single write larger than this (a flush of tens of thousands of flow summaries), or a reader
holding the log open (a long export), can pass it until the next checkpoint."""


@dataclass(frozen=True, slots=True)
class Retention:
    """How long and how much to keep; None disables a limit."""

    max_age: float | None = 30 * 86400.0
    """Seconds after `last_seen` that alerts and flow summaries are kept."""
    max_bytes: int | None = 256 * 1024 * 1024
    """Cap on the database file; with its write-ahead log it stays within this + `MARGIN`."""
    hourly_after: float | None = 86400.0
    """Seconds after which per-minute usage rows are summed into hourly rows (None: never)."""


def used_bytes(conn: sqlite3.Connection) -> int:
    """Pages in use times page size (free pages do not count)."""
    pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
    free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
    size = int(conn.execute("PRAGMA page_size").fetchone()[0])
    return (pages - free) * size


_SQL = {
    "flows_old": "DELETE FROM flows WHERE rowid IN "
    "(SELECT rowid FROM flows WHERE last_seen < ? ORDER BY last_seen LIMIT ?)",
    "flows_any": "DELETE FROM flows WHERE rowid IN "
    "(SELECT rowid FROM flows ORDER BY last_seen LIMIT ?)",
    "alerts_old": "DELETE FROM alerts WHERE id IN "
    "(SELECT id FROM alerts WHERE last_seen < ? ORDER BY last_seen LIMIT ?)",
    "alerts_any": "DELETE FROM alerts WHERE id IN "
    "(SELECT id FROM alerts ORDER BY last_seen LIMIT ?)",
    "facts_any": "DELETE FROM facts WHERE (kind, subject) IN "
    "(SELECT kind, subject FROM facts ORDER BY last_seen LIMIT ?)",
}


def _delete_batch(conn: sqlite3.Connection, which: str, *args: object, batch: int = BATCH) -> int:
    """Run one of the `_SQL` deletes as its own short transaction."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        n = conn.execute(_SQL[which], (*args, batch)).rowcount
        conn.execute("COMMIT")
    except sqlite3.Error:
        conn.execute("ROLLBACK")
        raise
    return int(n)


def _in_transaction(conn: sqlite3.Connection, fn: Callable[[], int]) -> int:
    conn.execute("BEGIN IMMEDIATE")
    try:
        n = fn()
        conn.execute("COMMIT")
    except sqlite3.Error:
        conn.execute("ROLLBACK")
        raise
    return n


def _delete_usage(conn: sqlite3.Connection, span: int, before: float | None) -> int:
    """One batch of the oldest usage rows of `span` (ending before `before` when given)."""
    return _in_transaction(conn, lambda: usage.delete_oldest(conn, span, before, USAGE_BATCH))


def _drop_minutes(conn: sqlite3.Connection, before: float) -> int:
    """One batch of minute rows of hours that ended before `before` (their hour rows stay)."""
    return _in_transaction(conn, lambda: usage.drop_minutes(conn, int(before), USAGE_BATCH))


def prune(store: Store, policy: Retention, now: float, stop: threading.Event | None = None) -> int:
    """Apply `policy` in small locked batches; returns the number of rows removed."""
    conn = store.connection_for_pruning()
    removed = 0

    def step(fn: Callable[[], int]) -> bool:
        nonlocal removed
        with store.lock:
            n = fn()
        removed += n
        return n > 0 and not (stop and stop.is_set())

    usage_removed = 0
    if policy.hourly_after is not None:
        hourly = now - policy.hourly_after
        while step(functools.partial(_drop_minutes, conn, hourly)):
            usage_removed += 1
    if policy.max_age is not None:
        cutoff = now - policy.max_age
        while step(lambda: _delete_batch(conn, "flows_old", cutoff)):
            pass
        while step(lambda: _delete_batch(conn, "alerts_old", cutoff)):
            pass
        for span in SPANS:
            while step(functools.partial(_delete_usage, conn, span, cutoff)):
                usage_removed += 1
    if policy.max_bytes is not None:
        with store.lock:
            over = file_bytes(conn) > policy.max_bytes
        target = int(policy.max_bytes * TRIM)
        trims: list[Callable[[], int]] = [
            functools.partial(_delete_batch, conn, "flows_any", batch=SIZE_BATCH),
            functools.partial(_delete_usage, conn, SPAN, None),
            functools.partial(_delete_usage, conn, HOUR, None),
            functools.partial(_delete_usage, conn, DAY, None),
            functools.partial(_delete_batch, conn, "alerts_any", batch=SIZE_BATCH),
            functools.partial(_delete_batch, conn, "facts_any", batch=SIZE_BATCH),
        ]
        for i, trim in enumerate(trims):
            while over:
                with store.lock:
                    over = used_bytes(conn) > target
                if not over or not step(trim):
                    break
                if i in (1, 2, 3):
                    usage_removed += 1
    if usage_removed:
        with store.lock:
            _in_transaction(conn, lambda: usage.drop_unused_dims(conn))
            store.forget_dims()
    _give_back(store, conn, stop)
    return removed


def _give_back(store: Store, conn: sqlite3.Connection, stop: threading.Event | None) -> None:
    """Return every free page to the file system, then cut the write-ahead log to nothing.

    `incremental_vacuum` frees one page per step of the statement, so it is stepped to the
    end (`fetchall`), a bounded number of pages per lock hold. The TRUNCATE checkpoint is
    what shrinks the database file (the vacuum only shortens it in the log) and the log.
    A stop leaves the rest of the free pages to the next pass.
    """
    freed = False
    while not (stop and stop.is_set()):
        with store.lock:
            if int(conn.execute("PRAGMA freelist_count").fetchone()[0]) == 0:
                break
            conn.execute(f"PRAGMA incremental_vacuum({VACUUM_PAGES})").fetchall()
            freed = True
    if freed:
        with store.lock:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()


class Pruner:
    """A daemon thread that runs `prune` every `every` seconds, and at once when the store
    reports a commit past the size cap, until stopped."""

    def __init__(
        self, store: Store, policy: Retention, clock: Callable[[], float], every: float = 300.0
    ) -> None:
        self._store = store
        self._policy = policy
        self._clock = clock
        self._every = every
        self._stop = threading.Event()
        self._wake = threading.Event()
        """Set by the store when a commit passes the size cap, and by `stop`."""
        self._thread = threading.Thread(target=self._run, name="netwatch-pruner", daemon=True)

    def start(self) -> None:
        """Start pruning in the background (the first pass runs at once)."""
        if self._policy.max_bytes is not None:
            self._store.watch_size(self._policy.max_bytes, self._wake.set)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                n = prune(self._store, self._policy, self._clock(), self._stop)
                if n:
                    log.info("retention removed %d rows", n)
            except sqlite3.Error as exc:
                log.warning("retention pass failed: %s", exc)
            self._wake.wait(self._every)
            self._wake.clear()

    def stop(self) -> None:
        """Stop and wait for the current batch to finish."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)
