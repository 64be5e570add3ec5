"""On-disk cache of RDAP owners (SQLite under the user's cache dir), so restarts do not refetch.

Answers are kept for 7 days; a definitive "no record" for 1 day. A network answer also serves
every other address inside its range. If the cache cannot be opened (read-only home, corrupt
file) RDAP still works, just without the disk cache.
"""

from __future__ import annotations

import ipaddress
import json
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

from netwatch import files
from netwatch.model import IPAddress, Owner

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


def _encode(owner: Owner) -> str:
    return json.dumps(
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


def _decode(text: str) -> Owner | None:
    try:
        d = json.loads(text)
        return Owner(
            status=str(d["status"]),
            reason=d.get("reason"),
            name=d.get("name"),
            handle=d.get("handle"),
            cidr=d.get("cidr"),
            country=d.get("country"),
            abuse_emails=tuple(str(x) for x in d.get("abuse_emails") or ()),
        )
    except (ValueError, KeyError, TypeError):
        return None


class OwnerCache:
    """A small thread-safe SQLite table of owners by address and by network range."""

    def __init__(self, conn: sqlite3.Connection, clock: Callable[[], float]) -> None:
        self._conn = conn
        self._clock = clock
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: Path, clock: Callable[[], float]) -> OwnerCache | None:
        """Open (creating) the cache; None when the file cannot be used."""
        try:
            files.make_dirs(path.parent)
            files.ensure_file(path)  # SQLite would create it 0644
            conn = sqlite3.connect(path, check_same_thread=False, timeout=2.0)
            conn.executescript(_SCHEMA)
        except (OSError, sqlite3.Error):
            return None
        return cls(conn, clock)

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
        except sqlite3.Error:
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
        except sqlite3.Error:
            return

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()
