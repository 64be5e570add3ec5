"""Usage history in SQLite: writing rollup rows at three spans, pruning, and queries.

Two tables (migration 2). `usage_dims` names each who-talked-to-whom once (process, remote,
transport, label; `rollup.Dims`) with the newest bucket that used it (`last_used`); `usage`
holds one row per (span, bucket, dim) with bytes both ways and new connections, keyed
WITHOUT ROWID on `(span, bucket, dim)`, so a row is about 25 bytes on disk and a time range of
one span is one index range.

Each minute row is also added to its hour's and its day's row when it is written (`SPANS`).
The minute rows are what a short window reads; after `Retention.hourly_after` the pruner
deletes them (the hour rows hold the same sums: that is the downsampling, without a pass
that re-reads them). A window is read as whole days, then whole hours at its two ends, then
minutes at the very ends (`plan`), so a 30-day query at 1,000 busy connections reads about
30,000 day rows and at most ~50,000 hour rows and ~120,000 minute rows, not 1.4 million
minutes plus 700,000 hours (bench/history.py measured both). Where the minute rows of an
end are gone the end's hour row counts whole (the answer says which spans it read).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from netwatch.store.rollup import (
    BY,
    DAY,
    DIM_NAMES,
    HOUR,
    SPAN,
    SPANS,
    TIME_BY,
    Dims,
    UsageQuery,
    UsageRow,
    UsageTotal,
)

# ---------------------------------------------------------------------- writing

_DIM_SQL = """INSERT INTO usage_dims (process_name, process_exe, remote_ip, country, asn,
    as_org, provider, transport, label, last_used) VALUES (?,?,?,?,?,?,?,?,?,?)"""
_USAGE_UPSERT = """INSERT INTO usage (span, bucket, dim, bytes_out, bytes_in, connections)
    VALUES (?,?,?,?,?,?)
    ON CONFLICT (span, bucket, dim) DO UPDATE SET
        bytes_out = bytes_out + excluded.bytes_out,
        bytes_in = bytes_in + excluded.bytes_in,
        connections = connections + excluded.connections"""


def load_dims(conn: sqlite3.Connection) -> dict[Dims, int]:
    """Every stored dims row by its values (the writer's cache)."""
    cols = ", ".join(DIM_NAMES)
    out: dict[Dims, int] = {}
    for row in conn.execute(f"SELECT id, {cols} FROM usage_dims"):  # noqa: S608  # constant names
        out[tuple(row[1:])] = int(row[0])
    return out


def write_usage(conn: sqlite3.Connection, ids: dict[Dims, int], rows: Sequence[UsageRow]) -> None:
    """Add `rows` inside the caller's transaction; new dims get ids (cached in `ids`)."""
    newest: dict[int, int] = {}
    sums: dict[tuple[int, int, int], list[int]] = {}
    for r in rows:
        dim = ids.get(r.dims)
        if dim is None:
            cur = conn.execute(_DIM_SQL, (*r.dims, r.bucket))
            dim = ids[r.dims] = int(cur.lastrowid or 0)
        if newest.get(dim, -1) < r.bucket:
            newest[dim] = r.bucket
        for span in SPANS:
            if span < r.span:
                continue
            acc = sums.setdefault((span, r.bucket - r.bucket % span, dim), [0, 0, 0])
            acc[0] += r.bytes_out
            acc[1] += r.bytes_in
            acc[2] += r.connections
    conn.executemany(_USAGE_UPSERT, [(*k, *v) for k, v in sums.items()])
    conn.executemany(
        "UPDATE usage_dims SET last_used = max(last_used, ?) WHERE id = ?",
        [(b, d) for d, b in newest.items()],
    )


# ---------------------------------------------------------------------- downsampling, pruning


def oldest_minute(conn: sqlite3.Connection) -> int | None:
    """Start of the oldest minute row, or None."""
    got = conn.execute("SELECT min(bucket) FROM usage WHERE span = ?", (SPAN,)).fetchone()[0]
    return None if got is None else int(got)


def drop_minutes(conn: sqlite3.Connection, before: int, batch: int) -> int:
    """Delete up to `batch` of the oldest minute rows of hours that ended before `before`
    (caller's transaction; their hour rows already hold the sums); returns how many went."""
    return delete_oldest(conn, SPAN, before - before % HOUR, batch)


def delete_oldest(conn: sqlite3.Connection, span: int, before: float | None, batch: int) -> int:
    """Delete up to `batch` of the oldest rows of `span` (only those ending before `before`,
    when given); returns how many went."""
    # A bound on the bucket itself (not bucket + span) keeps it one range of the key.
    last = 2**62 if before is None else int(before) - span
    cur = conn.execute(
        "DELETE FROM usage WHERE (span, bucket, dim) IN (SELECT span, bucket, dim FROM usage "
        "WHERE span = ? AND bucket <= ? ORDER BY bucket LIMIT ?)",
        (span, last, batch),
    )
    return int(cur.rowcount)


def drop_unused_dims(conn: sqlite3.Connection) -> int:
    """Delete the dims no remaining row can use (last used before the oldest row)."""
    oldest = [
        conn.execute("SELECT min(bucket) FROM usage WHERE span = ?", (s,)).fetchone()[0]
        for s in SPANS
    ]
    known = [int(b) for b in oldest if b is not None]
    if known:
        cur = conn.execute("DELETE FROM usage_dims WHERE last_used < ?", (min(known),))
    else:
        cur = conn.execute("DELETE FROM usage_dims")
    return int(cur.rowcount)


# ---------------------------------------------------------------------- reading


Plan = list[tuple[int, int, int]]
"""(span, from, to): the rows of `span` whose bucket starts in [from, to)."""


def plan(since: int, until: int, oldest_minute: int | None, width: int | None = None) -> Plan:
    """Which rows answer [since, until): whole days, then whole hours, then minutes at the
    ends. `width` (a time grouping) rules out spans coarser than it. An end older than the
    oldest minute row is read from its hour row, which counts whole."""
    return plan_window(since, until, oldest_minute, width)[0]


def plan_window(
    since: int, until: int, oldest_minute: int | None, width: int | None = None
) -> tuple[Plan, bool]:
    """`plan`, and whether an end of the window was read from a whole hour (coarse)."""
    spans = [s for s in (DAY, HOUR) if width is None or (s <= width and width % s == 0)]
    out: Plan = []
    coarse = False

    def cover(lo: int, hi: int, level: int) -> None:
        nonlocal coarse
        if lo >= hi:
            return
        if level == len(spans):  # minutes, or (hour by hour) the hour row where they are gone
            while lo < hi:
                hour = lo - lo % HOUR
                end = min(hi, hour + HOUR)
                if oldest_minute is None or lo < oldest_minute:
                    out.append((HOUR, hour, hour + HOUR))
                    coarse = coarse or lo > hour or end < hour + HOUR
                else:
                    out.append((SPAN, lo - lo % SPAN, end))
                lo = end
            return
        span = spans[level]
        a, b = -(-lo // span) * span, hi // span * span
        if a < b:
            out.append((span, a, b))
            cover(lo, a, level + 1)
            cover(b, hi, level + 1)
        else:
            cover(lo, hi, level + 1)

    cover(since, until, 0)
    # Two ends in one hour read that hour row twice: keep one.
    return sorted(set(out)), coarse


def usage_bounds(conn: sqlite3.Connection) -> tuple[int, int] | None:
    """[first bucket start, last bucket end) of the history, or None when empty: by hour
    rows (every row has one until age pruning takes it), else by day rows, and the end by
    the newest minute row when there is one."""
    ends: dict[int, tuple[int, int]] = {}
    for span in SPANS:
        # Two statements: SQLite answers a lone min() or max() with one index seek, but
        # both in one statement by scanning the span's rows.
        lo = conn.execute("SELECT min(bucket) FROM usage WHERE span = ?", (span,)).fetchone()[0]
        hi = conn.execute("SELECT max(bucket) FROM usage WHERE span = ?", (span,)).fetchone()[0]
        if lo is not None and hi is not None:
            ends[span] = (int(lo), int(hi) + span)
    if not ends:
        return None
    first = ends[HOUR] if HOUR in ends else ends[DAY] if DAY in ends else ends[SPAN]
    last = ends.get(SPAN, first)
    return first[0], max(last[1], first[0] + 1)


class TooManyGroupsError(ValueError):
    """A query found more groups than the caller allowed (`max_groups`)."""


def query_usage(
    conn: sqlite3.Connection, q: UsageQuery, max_groups: int | None = None
) -> tuple[list[UsageTotal], list[int], bool]:
    """Totals per group, largest first (by time: oldest first), the spans read, and whether
    an end of the window counted a whole hour (its minutes were gone).

    With `max_groups`, a query with more groups raises `TooManyGroupsError` as soon as it has
    seen one more: the daemon's history worker bounds what one request may make in memory
    and time (minute steps by remote over a month would be millions)."""
    bounds = usage_bounds(conn)
    if bounds is None:
        return [], [], False
    since = bounds[0] if q.since is None else max(int(q.since), bounds[0])
    until = bounds[1] if q.until is None else min(-(-q.until // 1), bounds[1])
    if since >= until:
        return [], [], False
    width = TIME_BY.get(q.by)
    if q.step:
        width = q.step if width is None else min(width, q.step)
    parts, coarse = plan_window(int(since), int(until), oldest_minute(conn), width)
    rows_sql = " UNION ALL ".join(
        "SELECT span, bucket, dim, bytes_out, bytes_in, connections FROM usage "
        "WHERE span = ? AND bucket >= ? AND bucket < ?"
        for _ in parts
    )
    args: list[object] = [x for p in parts for x in p]
    where: list[str] = []
    if q.process is not None:
        where.append("(d.process_name = ? OR d.process_exe = ?)")
        args += [q.process, q.process]
    if q.country is not None:
        where.append("d.country = ?")
        args.append(q.country.upper())
    if q.remote is not None:
        where.append("d.remote_ip = ?")
        args.append(q.remote)
    if q.by in TIME_BY:
        keys = [f"u.bucket - u.bucket % {TIME_BY[q.by]}"]
    else:
        keys = [f"d.{c}" for c in BY[q.by]]
    if q.step:
        keys.append(f"u.bucket - u.bucket % {int(q.step)}")
    group = ", ".join(keys)
    sql = (
        f"SELECT {group}, sum(u.bytes_out), sum(u.bytes_in), sum(u.connections), "  # noqa: S608
        f"min(u.bucket), max(u.bucket + u.span) FROM ({rows_sql}) u "
        "JOIN usage_dims d ON d.id = u.dim"
        + (" WHERE " + " AND ".join(where) if where else "")
        + f" GROUP BY {group}"
    )
    n = len(keys)
    out: list[UsageTotal] = []
    for row in conn.execute(sql, args):
        if max_groups is not None and len(out) >= max_groups:
            raise TooManyGroupsError(
                f"more than {max_groups} groups: narrow the window or grouping"
            )
        out.append(
            UsageTotal(
                key=tuple(row[: n - 1 if q.step else n]),
                bytes_out=int(row[n]),
                bytes_in=int(row[n + 1]),
                connections=int(row[n + 2]),
                first=int(row[n + 3]),
                last=int(row[n + 4]),
                at=int(row[n - 1]) if q.step else None,
            )
        )
    if q.by in TIME_BY or q.step:
        out.sort(key=lambda t: (t.at or 0, str(t.key)))
    else:
        out.sort(key=lambda t: (-t.total, str(t.key)))
        if q.top is not None:
            out = out[: q.top]
    return out, sorted({p[0] for p in parts}), coarse
