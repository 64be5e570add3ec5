"""Retention: delete old rows by age and keep the file under a size, in the background.

The pruner shares the store's single writer connection and takes its lock for one small batch
at a time, so the daemon loop never waits long behind it. Age applies to alerts and flow
summaries (by `last_seen`); size removes the oldest flow summaries first, then the oldest
alerts, and returns freed pages with `incremental_vacuum`. First-seen facts are kept (they
are what makes "first connection" mean first) unless the size limit needs their room too.
"""

from __future__ import annotations

import functools
import logging
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass

from netwatch.store.sqlite import Store

log = logging.getLogger("netwatch.store")

BATCH = 500
SIZE_BATCH = 50
"""Rows per transaction when trimming to size: small, so little more than needed goes."""


@dataclass(frozen=True, slots=True)
class Retention:
    """How long and how much to keep; None disables a limit."""

    max_age: float | None = 30 * 86400.0
    """Seconds after `last_seen` that alerts and flow summaries are kept."""
    max_bytes: int | None = 256 * 1024 * 1024
    """Upper bound on the database file's used pages."""


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

    if policy.max_age is not None:
        cutoff = now - policy.max_age
        while step(lambda: _delete_batch(conn, "flows_old", cutoff)):
            pass
        while step(lambda: _delete_batch(conn, "alerts_old", cutoff)):
            pass
    if policy.max_bytes is not None:
        limit = policy.max_bytes
        for which in ("flows_any", "alerts_any", "facts_any"):
            while True:
                with store.lock:
                    over = used_bytes(conn) > limit
                if not over or not step(
                    functools.partial(_delete_batch, conn, which, batch=SIZE_BATCH)
                ):
                    break
    if removed:
        with store.lock:
            conn.execute("PRAGMA incremental_vacuum")
    return removed


class Pruner:
    """A daemon thread that runs `prune` every `every` seconds until stopped."""

    def __init__(
        self, store: Store, policy: Retention, clock: Callable[[], float], every: float = 300.0
    ) -> None:
        self._store = store
        self._policy = policy
        self._clock = clock
        self._every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="netwatch-pruner", daemon=True)

    def start(self) -> None:
        """Start pruning in the background (the first pass runs at once)."""
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                n = prune(self._store, self._policy, self._clock(), self._stop)
                if n:
                    log.info("retention removed %d rows", n)
            except sqlite3.Error as exc:
                log.warning("retention pass failed: %s", exc)
            if self._stop.wait(self._every):
                return

    def stop(self) -> None:
        """Stop and wait for the current batch to finish."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)
