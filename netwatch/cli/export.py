"""`netwatch export`: the stored alert log as JSONL, CSV, syslog (RFC 5424) or ECS NDJSON.

Reads the store read-only (the daemon may be writing at the same time; WAL lets both run).
`--since`/`--until` take ISO 8601 (`2024-05-01`, `2024-05-01T10:00:00+02:00`; no zone means
local time) or a relative age (`90s`, `15m`, `1h`, `2d`, `1w`). CSV columns are documented in
`netwatch.export.schema` and the README.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from netwatch.cli.common import open_output
from netwatch.config import EXPORT_FORMATS
from netwatch.model import Severity
from netwatch.timetext import parse_when


def parse_time(text: str, now: float | None = None) -> float:
    """ISO 8601 or a relative age (`1h`, `2d`) as epoch seconds (`timetext.parse_when`);
    ArgumentTypeError otherwise."""
    try:
        return parse_when(text, now)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the `export` subcommand."""
    from netwatch.export.schema import COLUMNS

    p = sub.add_parser(
        "export",
        help="alert log from the store as jsonl, csv, syslog or ecs",
        description="Write stored alerts, oldest first, in one of the export formats.",
        epilog="CSV columns: "
        + "; ".join(
            f"{c.name} ({c.unit + ', ' if c.unit else ''}{c.description})" for c in COLUMNS
        ),  # fmt: skip
    )
    p.add_argument("--format", choices=EXPORT_FORMATS, default="jsonl")
    p.add_argument("--db", type=Path, metavar="PATH", help="SQLite store (default: state dir)")
    p.add_argument("--since", type=parse_time, metavar="T", help="alerts seen at or after T")
    p.add_argument("--until", type=parse_time, metavar="T", help="alerts first seen by T")
    p.add_argument(
        "--severity",
        choices=[s.value for s in Severity],
        metavar="S",
        help="minimum severity: info, low, medium, high, critical",
    )
    p.add_argument("--rule", metavar="R", help="only this rule id")
    p.add_argument("-o", "--output", type=Path, metavar="FILE", help="write to FILE, not stdout")
    p.set_defaults(func=run)


SERVICE_DB = Path("/var/lib/netwatch/netwatch.db")
"""Where the systemd unit's daemon keeps its store (StateDirectory=netwatch)."""


def default_store(own: Path) -> Path:
    """This user's store if it exists, else the system service's (for `sudo netwatch export`)."""
    return own if own.exists() or not SERVICE_DB.exists() else SERVICE_DB


def run(args: argparse.Namespace) -> int:
    """Query the store and write the chosen format."""
    from netwatch import paths
    from netwatch.export.csv import csv_header
    from netwatch.export.sinks import FORMATTERS
    from netwatch.store import AlertQuery, read_alerts

    query = AlertQuery(
        since=args.since,
        until=args.until,
        min_severity=Severity(args.severity) if args.severity else None,
        rule=args.rule,
    )
    # Opens the store now: a missing or foreign one fails before any output is written.
    alerts = read_alerts(args.db or default_store(paths.default_db()), query)
    fmt = FORMATTERS[args.format]
    out = open_output(args.output)
    try:
        # CSV rows end in CRLF (RFC 4180); the other formats are one record per LF line.
        end = "\r\n" if args.format == "csv" else "\n"
        if args.format == "csv":
            out.write(csv_header())
        for alert in alerts:
            out.write(fmt(alert))
            out.write(end)
        out.flush()
    finally:
        if out is not sys.stdout:
            out.close()
    return 0
