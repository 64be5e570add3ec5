"""Schema migrations of the SQLite store, versioned by `PRAGMA user_version`.

Each entry of `MIGRATIONS` moves the database from version i to i + 1 and runs inside one
transaction with the version bump, so a crash mid-migration leaves the old version intact.
Never edit a shipped migration: append a new one. Imports only sqlite3.
"""

from __future__ import annotations

import sqlite3

MIGRATIONS: tuple[str, ...] = (
    # 1: alerts with evidence, flow summaries, first-seen facts.
    """
    CREATE TABLE alerts (
        id            TEXT PRIMARY KEY,
        rule_id       TEXT NOT NULL,
        title         TEXT NOT NULL,
        severity      TEXT NOT NULL,
        severity_rank INTEGER NOT NULL,
        identifier    TEXT NOT NULL,
        message       TEXT NOT NULL,
        first_seen    REAL NOT NULL,
        last_seen     REAL NOT NULL,
        count         INTEGER NOT NULL,
        state         TEXT NOT NULL,
        process_name  TEXT,
        process_exe   TEXT,
        remote_ip     TEXT,
        country       TEXT,
        stored_at     REAL NOT NULL,
        record        TEXT NOT NULL
    );
    CREATE INDEX alerts_last_seen ON alerts (last_seen);
    CREATE INDEX alerts_rule ON alerts (rule_id, last_seen);
    CREATE TABLE alert_evidence (
        alert_id TEXT NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        name     TEXT NOT NULL,
        value    TEXT NOT NULL,
        PRIMARY KEY (alert_id, position)
    ) WITHOUT ROWID;
    CREATE TABLE flows (
        flow_key       TEXT PRIMARY KEY,
        transport      TEXT NOT NULL,
        local_ip       TEXT NOT NULL,
        local_port     INTEGER NOT NULL,
        remote_ip      TEXT,
        remote_port    INTEGER,
        direction      TEXT NOT NULL,
        process_name   TEXT,
        process_exe    TEXT,
        pid            INTEGER,
        country        TEXT,
        asn            INTEGER,
        as_org         TEXT,
        app            TEXT,
        category       TEXT,
        vpn            INTEGER NOT NULL DEFAULT 0,
        bytes_sent     INTEGER,
        bytes_received INTEGER,
        first_seen     REAL NOT NULL,
        last_seen      REAL NOT NULL
    );
    CREATE INDEX flows_last_seen ON flows (last_seen);
    CREATE TABLE facts (
        kind       TEXT NOT NULL,
        subject    TEXT NOT NULL,
        first_seen REAL NOT NULL,
        last_seen  REAL NOT NULL,
        PRIMARY KEY (kind, subject)
    ) WITHOUT ROWID;
    """,
    # 2: usage history (store/rollup.py): per-minute, later hourly, bytes per who-to-whom.
    """
    CREATE TABLE usage_dims (
        id           INTEGER PRIMARY KEY,
        process_name TEXT,
        process_exe  TEXT,
        remote_ip    TEXT,
        country      TEXT,
        asn          INTEGER,
        as_org       TEXT,
        provider     TEXT,
        transport    TEXT NOT NULL,
        label        TEXT,
        last_used    INTEGER NOT NULL
    );
    CREATE TABLE usage (
        span        INTEGER NOT NULL,
        bucket      INTEGER NOT NULL,
        dim         INTEGER NOT NULL,
        bytes_out   INTEGER NOT NULL,
        bytes_in    INTEGER NOT NULL,
        connections INTEGER NOT NULL,
        PRIMARY KEY (span, bucket, dim)
    ) WITHOUT ROWID;
    """,
)

LATEST = len(MIGRATIONS)


class SchemaTooNewError(Exception):
    """The database was written by a newer netwatch; refusing to touch it."""


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema to `LATEST`; return the version found before migrating."""
    found = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if found > LATEST:
        raise SchemaTooNewError(f"schema version {found} is newer than this netwatch ({LATEST})")
    for version in range(found, LATEST):
        # executescript commits first; BEGIN makes the script and the version bump atomic.
        script = MIGRATIONS[version]
        conn.executescript(
            f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {version + 1};\nCOMMIT;"
        )
    return found
