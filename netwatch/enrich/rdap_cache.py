"""On-disk cache of RDAP owners (SQLite under the user's cache dir), so restarts do not refetch.

Answers are kept for 7 days; a definitive "no record" for 1 day. A network answer also serves
every other address inside its range. If the cache cannot be opened (read-only home) RDAP
still works, just without the disk cache; a damaged file (not SQLite, or failing SQLite's
quick check) is set aside as `<name>.damaged` and replaced by an empty cache, and `replaced`
says so in one line. A cached answer of the wrong shape is a miss, never an error.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

from netwatch import files
from netwatch.model import IPAddress, Owner


class _DamagedError(Exception):
    """The cache file is not an intact SQLite database (the reason is the argument)."""


def _lenient_text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def _connect(path: Path) -> sqlite3.Connection:
    """Open the file with the schema in place; `_DamagedError` when SQLite finds it damaged.

    `OperationalError` (locked, read-only, cannot open) is not damage: the file may be fine.
    """
    files.ensure_file(path)  # SQLite would create it 0644
    conn = sqlite3.connect(path, check_same_thread=False, timeout=2.0)
    # A damaged page can hold bytes that are not UTF-8: such a row is then a miss (its JSON
    # does not parse), not an exception out of a lookup.
    conn.text_factory = _lenient_text
    try:
        check = conn.execute("PRAGMA quick_check").fetchone()
        if check is None or check[0] != "ok":
            raise _DamagedError(f"quick check: {check[0] if check else 'no answer'}")
        conn.executescript(_SCHEMA)
    except sqlite3.OperationalError:
        conn.close()
        raise
    except (sqlite3.DatabaseError, UnicodeDecodeError) as exc:  # not a database, malformed
        conn.close()  # (SQLite's message quoting a damaged schema may not be UTF-8 itself)
        raise _DamagedError(" ".join(str(exc).split())) from None
    except _DamagedError:
        conn.close()
        raise
    return conn


TTL = 7 * 24 * 3600.0
NEGATIVE_TTL = 24 * 3600.0
_SCHEMA = """
CREATE TABLE IF NOT EXISTS owners (
    ip TEXT PRIMARY KEY, data TEXT NOT NULL, expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS networks (
    version INTEGER NOT NULL, start TEXT NOT NULL, last TEXT NOT NULL,
    data TEXT NOT NULL, expires REAL NOT NULL, PRIMARY KEY (version, start, last));
"""


def _hex(ip: IPAddress) -> str:
    """Fixed-width hex, so string order is address order (IPv6 does not fit SQLite integers)."""
    return f"{int(ip):032x}"


_DIGEST = 16
"""Hex digits of the SHA-256 prefix each row carries: a damaged byte inside a row (a disk or
copy error that SQLite's own structure checks do not see) makes the row a miss, never a
wrong owner."""


def _digest(body: str) -> str:
    return hashlib.sha256(body.encode("utf-8", "surrogatepass")).hexdigest()[:_DIGEST]


def _encode(owner: Owner) -> str:
    body = json.dumps(
        {
            "status": owner.status,
            "reason": owner.reason,
            "name": owner.name,
            "handle": owner.handle,
            "cidr": owner.cidr,
            "country": owner.country,
            "abuse_emails": list(owner.abuse_emails),
        }
    )
    return f"{_digest(body)} {body}"


_TEXT_FIELDS = ("reason", "name", "handle", "cidr", "country")


def _decode(text: object) -> Owner | None:
    """A cached owner, or None (a miss) when the row is not one netwatch wrote, or its digest
    does not match (damaged, or written by a netwatch before rows carried one)."""
    if not isinstance(text, str) or len(text) < _DIGEST + 1 or text[_DIGEST] != " ":
        return None
    body = text[_DIGEST + 1 :]
    if _digest(body) != text[:_DIGEST]:
        return None
    try:
        d = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(d, dict) or d.get("status") not in ("ok", "unknown"):
        return None
    fields = {k: d.get(k) for k in _TEXT_FIELDS}
    emails = d.get("abuse_emails") or []
    if not all(v is None or isinstance(v, str) for v in fields.values()):
        return None
    if not isinstance(emails, list) or not all(isinstance(x, str) for x in emails):
        return None
    return Owner(status=d["status"], abuse_emails=tuple(emails), **fields)


class OwnerCache:
    """A small thread-safe SQLite table of owners by address and by network range."""

    def __init__(self, conn: sqlite3.Connection, clock: Callable[[], float]) -> None:
        self._conn = conn
        self._clock = clock
        self._lock = threading.Lock()
        self.replaced: str | None = None
        """One line naming a damaged cache file that was set aside for an empty one."""

    @classmethod
    def open(cls, path: Path, clock: Callable[[], float]) -> OwnerCache | None:
        """Open (creating) the cache; a damaged file is replaced, None when none can be used."""
        try:
            files.make_dirs(path.parent)
            return cls(_connect(path), clock)
        except _DamagedError as exc:
            reason = exc.args[0]
        except (OSError, sqlite3.Error):
            return None
        aside = path.with_name(path.name + ".damaged")
        try:
            os.replace(path, aside)
            cache = cls(_connect(path), clock)
        except (OSError, sqlite3.Error, _DamagedError):
            return None
        cache.replaced = (
            f"{path}: damaged RDAP cache ({reason}); set aside as {aside}, started an empty one"
        )
        return cache

    def get(self, ip: IPAddress) -> Owner | None:
        """Return an unexpired owner for the address or for a network that contains it."""
        now = self._clock()
        key = _hex(ip)
        try:
            with self._lock:
                row = self._conn.execute(
                    "SELECT data FROM owners WHERE ip = ? AND expires > ?", (str(ip), now)
                ).fetchone()
                if row is None:
                    row = self._conn.execute(
                        "SELECT data FROM networks WHERE version = ? AND start <= ? AND last >= ?"
                        " AND expires > ? ORDER BY start DESC, last ASC LIMIT 1",
                        (ip.version, key, key, now),
                    ).fetchone()
        except (sqlite3.Error, UnicodeDecodeError):
            return None
        return None if row is None else _decode(row[0])

    def put(self, ip: IPAddress, owner: Owner) -> None:
        """Store an answer (and its network range, when it names one)."""
        now = self._clock()
        ttl = TTL if owner.status == "ok" else NEGATIVE_TTL
        data = _encode(owner)
        network = None
        if owner.cidr:
            try:
                network = ipaddress.ip_network(owner.cidr, strict=False)
            except ValueError:
                network = None
        try:
            with self._lock, self._conn:
                self._conn.execute(
                    "INSERT OR REPLACE INTO owners VALUES (?, ?, ?)", (str(ip), data, now + ttl)
                )
                if network is not None and ip in network:
                    self._conn.execute(
                        "INSERT OR REPLACE INTO networks VALUES (?, ?, ?, ?, ?)",
                        (
                            network.version,
                            _hex(network.network_address),
                            _hex(network.broadcast_address),
                            data,
                            now + ttl,
                        ),
                    )
        except (sqlite3.Error, UnicodeDecodeError):
            return

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()
