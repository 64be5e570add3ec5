"""A recorded store for the history screen's tests: two days of six programs' usage.

Written through the store's own write path (`Store.save_flows` with rollup rows; novelty
facts and an alert with `save_tick`), as the daemon writes it: the last day per minute, the
day before per hour (as after `hourly_after_days`). Deterministic: the numbers follow from
the minute, so tests can state them. `END` is the tui helpers' fixed clock.
"""

from __future__ import annotations

from pathlib import Path

from netwatch.model import Severity
from netwatch.store import Store
from netwatch.store.rollup import HOUR, SPAN, Dims, UsageRow
from tests.builders import make_alert, make_process
from tests.tui.helpers import NOW

END = int(NOW) // SPAN * SPAN
"""The history ends at the minute of the tui tests' clock."""
AWAY_SINCE = END - 6 * HOUR
"""The dashboard was last opened six hours before the end."""


def _dims(name: str, ip: str, cc: str, asn: int, org: str, label: str | None = "tls") -> Dims:
    return (name, f"/usr/bin/{name}", ip, cc, asn, org, None, "tcp", label)


PROGRAMS: dict[str, Dims] = {
    "firefox": _dims("firefox", "198.51.100.7", "US", 64496, "Example US"),
    "curl": _dims("curl", "203.0.113.5", "DE", 64497, "Example DE"),
    "vpnclient": _dims("vpnclient", "192.0.2.44", "JP", 64498, "VPN Gate Relay", "softether"),
    "ssh": _dims("ssh", "198.51.100.9", "NL", 64499, "Example NL", None),
    "backup": _dims("backup", "203.0.113.80", "FR", 64500, "Example FR"),
    "updater": _dims("updater", "192.0.2.9", "SE", 64501, "Example SE"),
}


def per_minute(name: str, minute: int) -> int:
    """Bytes `name` moved in the minute starting `minute` (epoch seconds)."""
    m = minute // SPAN
    if name == "firefox":
        return 200_000 + 150_000 * (m % 7)
    if name == "curl":
        return 40_000 if m % 3 == 0 else 0
    if name == "vpnclient":  # online only in the last three hours
        return 900_000 if minute >= END - 3 * HOUR and m % 2 else 0
    if name == "ssh":
        return 5_000
    if name == "backup":
        return 3_000_000 if m % 60 < 5 else 0
    return 1_000 if m % 10 == 0 else 0


def write_history_store(path: Path) -> Path:
    """Write the store at `path` and return it."""
    store = Store(path)
    rows: list[UsageRow] = []
    # The day before: hour rows (sums of the same per-minute numbers).
    for h in range(END - 2 * 86400, END - 86400, HOUR):
        for name, dims in PROGRAMS.items():
            total = sum(per_minute(name, h + i * SPAN) for i in range(60))
            if total:
                rows.append(UsageRow(h, HOUR, dims, total // 10, total - total // 10, 1))
    for minute in range(END - 86400, END, SPAN):
        for name, dims in PROGRAMS.items():
            n = per_minute(name, minute)
            if n:
                rows.append(UsageRow(minute, SPAN, dims, n // 10, n - n // 10, 0))
    store.save_flows([], rows)
    facts = [
        ("program:/usr/bin/firefox", END - 10 * 86400),
        ("country:/usr/bin/firefox|US", END - 10 * 86400),
        ("program:/usr/bin/vpnclient", END - 3 * HOUR),
        ("country:/usr/bin/vpnclient|JP", END - 3 * HOUR),
    ]
    alert = make_alert(
        rule_id="vpngate.relay",
        severity=Severity.HIGH,
        message="vpnclient talks to a VPN Gate relay",
        process=make_process("vpnclient"),
        first_seen=END - 2 * HOUR,
        alert_id="vpngate.relay:1",
    )
    store.save_tick([alert], {"first_seen": [(s, float(t)) for s, t in facts]}, END)
    store.close()
    return path


def write_recent_store(path: Path, end: int, hours: int = 3) -> dict[str, int]:
    """A store whose history is the `hours` before `end` (a live daemon's retention keeps
    it), per minute, written as the daemon writes it; returns each program's bytes."""
    store = Store(path)
    rows: list[UsageRow] = []
    totals: dict[str, int] = {}
    end -= end % SPAN
    for minute in range(end - hours * HOUR, end, SPAN):
        for name, dims in PROGRAMS.items():
            n = per_minute(name, minute)
            if n:
                rows.append(UsageRow(minute, SPAN, dims, n // 10, n - n // 10, 0))
                totals[name] = totals.get(name, 0) + n
    store.save_flows([], rows)
    store.close()
    return totals


def write_big_store(path: Path, end: int, dims: int, minutes: int) -> int:
    """A store of `dims` who-talked-to-whom rows, each with a minute row in every one of the
    `minutes` before `end` (only minute rows: a query by minute steps reads them all), written
    with plain SQL for speed; returns how many usage rows it holds."""
    import sqlite3

    Store(path).close()  # the schema, as the daemon makes it
    end -= end % SPAN
    conn = sqlite3.connect(path)
    with conn:
        conn.executemany(
            "INSERT INTO usage_dims (id, process_name, process_exe, remote_ip, country, asn, "
            "as_org, provider, transport, label, last_used) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                (i + 1, f"prog{i % 50}", f"/usr/bin/prog{i % 50}", f"198.51.{i // 250}.{i % 250}",
                 "NL", 64496 + i % 7, "Example", None, "tcp", "tls", end)
                for i in range(dims)
            ),
        )  # fmt: skip
        conn.executemany(
            "INSERT INTO usage (span, bucket, dim, bytes_out, bytes_in, connections) "
            "VALUES (60, ?, ?, ?, ?, 0)",
            (
                (end - (m + 1) * SPAN, d + 1, 1000 + d, 2000 + m)
                for m in range(minutes)
                for d in range(dims)
            ),
        )
    conn.close()
    return dims * minutes
