"""`netwatch history`: who used the network, how much, to where, over a time window.

Reads the usage history the daemon keeps in its store (`store/rollup.py`, `store/usage.py`),
read-only like `netwatch export` (and with its store path, `--since`/`--until` and `-o`).
Totals are grouped `--by` process (name and executable), country, ASN, provider, remote
address, label, transport, or per hour or day (UTC); filters narrow to one process (name or
executable path), country or remote address. Formats: a table, JSONL and CSV with the same
fields (`FIELDS`), and ECS NDJSON: one `event.kind: metric` document per group, in the field
names of the Elastic Common Schema (`ecs_document`; kept here, apart from the alert and flow
documents of `export/ecs.py`, because a total over a window is neither).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netwatch import files
from netwatch.cli.common import open_output
from netwatch.cli.export import default_store, parse_time
from netwatch.export.ecs import ECS_VERSION

if TYPE_CHECKING:
    from netwatch.store.rollup import Away, UsageAnswer, UsageQuery, UsageTotal

BY_CHOICES = (
    "process",
    "country",
    "asn",
    "provider",
    "remote",
    "label",
    "transport",
    "hour",
    "day",
)
FORMATS = ("table", "jsonl", "csv", "ecs")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the `history` subcommand."""
    p = sub.add_parser(
        "history",
        help="bytes and connections by process, country, ... over a time window",
        description=(
            "Totals from the usage history in the store: bytes sent and received and new "
            "connections, grouped by --by, largest first (by hour or day: oldest first)."
        ),
    )
    p.add_argument("--format", choices=FORMATS, default="table", help="output (default table)")
    p.add_argument("--db", type=Path, metavar="PATH", help="SQLite store (default: state dir)")
    p.add_argument("--since", type=parse_time, metavar="T", help="from T (ISO 8601 or 2h, 7d)")
    p.add_argument("--until", type=parse_time, metavar="T", help="up to T (default: now)")
    p.add_argument("--by", choices=BY_CHOICES, default="process", help="grouping (process)")
    p.add_argument("--process", metavar="P", help="only process name or executable P")
    p.add_argument("--country", metavar="CC", help="only remote country CC (ISO 3166 code)")
    p.add_argument("--remote", metavar="IP", help="only remote address IP")
    p.add_argument("--top", type=_top, metavar="N", help="only the N largest groups")
    p.add_argument(
        "--attach",
        nargs="?",
        const=True,
        type=Path,
        metavar="SOCKET",
        help="ask the running daemon over its socket (SOCKET, or the one found as "
        "`netwatch watch` finds it) instead of reading the store file",
    )
    p.add_argument("-o", "--output", type=Path, metavar="FILE", help="write to FILE, not stdout")
    p.set_defaults(func=run)


def _top(text: str) -> int:
    if not text.isdecimal() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return int(text)


def key_fields(by: str) -> tuple[str, ...]:
    """The fields that name a group of `by`."""
    from netwatch.store.rollup import BY

    return BY.get(by, ("start",))


def fields(by: str) -> tuple[str, ...]:
    """The JSONL/CSV fields of one group, in order."""
    return (*key_fields(by), "bytes_out", "bytes_in", "bytes", "connections", "first", "last")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def record(by: str, t: UsageTotal) -> dict[str, Any]:
    """One group as a flat dict of `fields(by)` (times ISO 8601 UTC)."""
    out: dict[str, Any] = {}
    for name, value in zip(key_fields(by), t.key, strict=True):
        out[name] = _iso(float(value)) if name == "start" and value is not None else value
    out.update(
        bytes_out=t.bytes_out,
        bytes_in=t.bytes_in,
        bytes=t.total,
        connections=t.connections,
        first=_iso(t.first),
        last=_iso(t.last),
    )
    return out


def ecs_document(by: str, t: UsageTotal, host: str) -> dict[str, Any]:
    """One group as an ECS `metric` event: the local host sent `source.bytes` to the remote
    side and received `destination.bytes` from it, between `event.start` and `event.end`."""
    r = record(by, t)
    dest: dict[str, Any] = {"bytes": t.bytes_in}
    if r.get("remote_ip"):
        dest["ip"] = r["remote_ip"]
    if r.get("country"):
        dest["geo"] = {"country_iso_code": r["country"]}
    if r.get("asn") is not None or r.get("as_org"):
        asn: dict[str, Any] = {}
        if r.get("asn") is not None:
            asn["number"] = r["asn"]
        if r.get("as_org"):
            asn["organization"] = {"name": r["as_org"]}
        dest["as"] = asn
    doc: dict[str, Any] = {
        "@timestamp": r["first"],
        "ecs": {"version": ECS_VERSION},
        "event": {
            "kind": "metric",
            "category": ["network"],
            "type": ["info"],
            "dataset": "netwatch.usage",
            "start": r["first"],
            "end": r["last"],
        },
        "host": {"name": host},
        "observer": {"type": "host", "hostname": host, "product": "netwatch"},
        "network": {"bytes": t.total},
        "source": {"bytes": t.bytes_out},
        "destination": dest,
        "netwatch": {"usage": {"by": by, "connections": t.connections}},
    }
    if r.get("process_name") or r.get("process_exe"):
        proc: dict[str, Any] = {}
        if r.get("process_name"):
            proc["name"] = r["process_name"]
        if r.get("process_exe"):
            proc["executable"] = r["process_exe"]
        doc["process"] = proc
    if r.get("transport"):
        doc["network"]["transport"] = r["transport"]
    if r.get("label"):
        doc["network"]["protocol"] = r["label"]
    if r.get("provider"):
        doc["netwatch"]["usage"]["provider"] = r["provider"]
    return doc


def table_lines(by: str, totals: list[UsageTotal], coarse: bool) -> Iterator[str]:
    """The totals as an aligned table, with a note on how fine the history was."""
    from netwatch.cli.common import table
    from netwatch.model import units

    names = key_fields(by)
    header = (*(n.upper() for n in names), "SENT", "RECEIVED", "TOTAL", "CONNS", "FIRST", "LAST")
    rows = []
    for t in totals:
        r = record(by, t)
        keys = tuple("-" if r[n] is None else str(r[n]) for n in names)
        rows.append(
            (
                *keys,
                units.short(t.bytes_out),
                units.short(t.bytes_in),
                units.short(t.total),
                str(t.connections),
                r["first"][:16].replace("T", " "),
                r["last"][:16].replace("T", " "),
            )
        )
    if not rows:
        yield "no usage history in this window"
        return
    yield from table(header, rows)
    if coarse:
        yield "(the window starts or ends inside an hour kept only as a total: counted whole)"


def run(args: argparse.Namespace) -> int:
    """Query the store and write the chosen format."""
    import socket

    from netwatch import paths
    from netwatch.errors import DataFileError, UsageError
    from netwatch.store.rollup import UsageQuery
    from netwatch.store.sqlite import read_usage

    if args.since is not None and args.until is not None and args.since >= args.until:
        raise DataFileError("--since must be before --until")
    query = UsageQuery(
        since=args.since,
        until=args.until,
        by=args.by,
        process=args.process,
        country=args.country,
        remote=args.remote,
        top=args.top,
    )
    if args.attach is not None:
        if args.db is not None:
            raise UsageError("--attach asks the daemon; --db reads a store file: give one")
        answer = _ask_daemon(args.attach, query)
    else:
        answer = read_usage(args.db or default_store(paths.default_db()), query)
    out = open_output(args.output)
    try:
        if args.format == "table":
            for line in table_lines(args.by, answer.totals, answer.coarse):
                out.write(line + "\n")
            if answer.truncated:
                out.write("(the daemon sent only part of the groups: narrow the window)\n")
        elif args.format == "csv":
            buf = io.StringIO()
            w = csv.DictWriter(buf, fieldnames=fields(args.by), lineterminator="\r\n")
            w.writeheader()
            w.writerows(record(args.by, t) for t in answer.totals)
            out.write(buf.getvalue())
        elif args.format == "ecs":
            host = socket.gethostname()
            for t in answer.totals:
                out.write(json.dumps(ecs_document(args.by, t, host), sort_keys=True) + "\n")
        else:
            for t in answer.totals:
                out.write(json.dumps(record(args.by, t)) + "\n")
        out.flush()
    finally:
        if out is not sys.stdout:
            out.close()
    return 0


def _ask_daemon(attach: Path | bool, query: UsageQuery) -> UsageAnswer:
    """The daemon's answer to `query` over its socket (`daemon.client.DaemonHistory`)."""
    from netwatch.daemon.client import DaemonHistory, find_daemon_socket
    from netwatch.errors import NetwatchError

    path = find_daemon_socket(attach if isinstance(attach, Path) else None)
    if path is None:
        where = attach if isinstance(attach, Path) else "the default sockets"
        raise NetwatchError(f"no netwatch daemon answers on {where}")
    source = DaemonHistory(path, None)
    try:
        return source.usage(query)
    finally:
        source.close()


class StoreHistory:
    """The dashboard's history source on a store file (`ui.screens.history.HistorySource`).

    Each call opens the file read-only and closes it (the daemon may be writing; WAL lets
    both run); a missing or damaged file is a `DataFileError` line the screen shows.
    """

    def __init__(self, path: Path, away_since: float | None) -> None:
        self.path = path
        self.away_since = away_since

    def usage(self, query: UsageQuery) -> UsageAnswer:
        """Totals for `query`."""
        from netwatch.store.sqlite import read_usage

        return read_usage(self.path, query)

    def bounds(self) -> tuple[int, int] | None:
        """[start, end) of the stored history."""
        from netwatch.store.sqlite import read_bounds

        return read_bounds(self.path)

    def away(self) -> Away | None:
        """New programs, countries and alerts since the dashboard was last opened on it."""
        from netwatch.store.sqlite import read_away

        return None if self.away_since is None else read_away(self.path, self.away_since)


def last_attached(store: Path, now: float, state: Path) -> float | None:
    """When a dashboard was last opened on `store` (None: never), and remember `now`.

    Kept per user in `state` (a small JSON file, 0600): the store may be the system daemon's,
    which a dashboard only reads. A damaged file is started again (it only holds these times).
    """
    key = str(store.resolve())
    seen: dict[str, float] = {}
    try:
        raw = json.loads(state.read_text(encoding="utf-8"))
        if isinstance(raw, dict):
            seen = {str(k): float(v) for k, v in raw.get("last_attached", {}).items()}
    except (OSError, ValueError, TypeError, AttributeError):
        seen = {}
    before = seen.get(key)
    seen[key] = now
    try:
        files.make_dirs(state.parent)
        with files.open_private(state, "w", encoding="utf-8") as out:
            json.dump({"last_attached": seen}, out)
    except OSError:
        pass  # a read-only home: "while you were away" then counts from the last success
    return before
