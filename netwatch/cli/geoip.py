"""`netwatch geoip status|update`: which GeoIP files are used, and the opt-in DB-IP refresh.

`status` lists every file in priority order with its type, build date and age, warns about
stale data and broken files, and prints the attribution line. `update` downloads DB-IP Lite
country and ASN files (`--city` adds the city file) into the data dir; it is the only command
that fetches GeoIP data, and only when run.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime

from netwatch.cli.common import add_geoip

ATTRIBUTION = "IP geolocation by DB-IP (https://db-ip.com)"
STALE_DAYS = {"geoip2": 30, "geolite2": 30, "discovered": 60, "updated": 45, "bundled": 120}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `geoip status` and `geoip update`."""
    parser = sub.add_parser("geoip", help="GeoIP data in use; opt-in DB-IP Lite update")
    actions = parser.add_subparsers(dest="geoip_command", metavar="ACTION", required=True)
    status = actions.add_parser("status", help="files in use, build dates, staleness")
    add_geoip(status)
    status.set_defaults(func=run_status)
    update = actions.add_parser(
        "update",
        help="download current DB-IP Lite country and ASN files (online, opt-in)",
        description=(
            "Download this month's DB-IP Lite country and ASN files (previous month if not yet "
            f"published) into the netwatch data directory. {ATTRIBUTION}, CC BY 4.0."
        ),
    )
    update.add_argument("--city", action="store_true", help="also fetch the city file (~130 MB)")
    update.add_argument(
        "--url", metavar="BASE", help="download base URL (default $NETWATCH_GEOIP_URL or DB-IP)"
    )
    update.add_argument("--timeout", type=float, default=30.0, help="network timeout (seconds)")
    update.set_defaults(func=run_update)


def _day(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d")


def run_status(args: argparse.Namespace) -> int:
    """Print the files in use, warnings and the attribution."""
    from pathlib import Path

    from netwatch.enrich.enricher import build_enricher

    enricher = build_enricher([Path(p) for p in args.geoip_db])
    now = time.time()
    try:
        dbs = enricher.geo.databases
        print("GeoIP files in use (first answer per field wins):")
        warnings = []
        for db in dbs:
            origin = db.origin.name.lower()
            age = int((now - db.build_epoch) // 86400)
            print(f"  {origin:<10} {db.path}")
            built = _day(db.build_epoch)
            print(f"             type {db.database_type}, built {built} ({age} days)")
            if age > STALE_DAYS.get(origin, 10**6):
                hint = (
                    "run `geoipupdate`"
                    if origin in ("geoip2", "geolite2")
                    else ("run `netwatch geoip update` for current DB-IP Lite data")
                )
                warnings.append(f"{db.path.name} is {age} days old; {hint}")
        if not dbs:
            print("  (none: addresses get no country or ASN)")
        for path, reason in enricher.problems.items():
            warnings.append(f"ignored {path}: {reason}")
        for line in warnings:
            print(f"warning: {line}")
        print(ATTRIBUTION)
    finally:
        enricher.close()
    return 0


class Bar:
    """A one-line progress bar on stderr, redrawn in place on a terminal."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.last = ""

    def __call__(self, name: str, done: int, total: int | None) -> None:
        """Draw the bar for `done` of `total` bytes (total may be unknown)."""
        if total:
            filled = int(30 * done / total)
            line = f"{name} [{'#' * filled}{'.' * (30 - filled)}] {done * 100 // total:3d}%"
        else:
            line = f"{name} {done / 1e6:.1f} MB"
        if line != self.last and self.tty:
            sys.stderr.write("\r" + line)
            sys.stderr.flush()
        self.last = line

    def finish(self) -> None:
        """End the line (the last state is printed once when stderr is not a terminal)."""
        if self.last:
            sys.stderr.write("\n" if self.tty else self.last + "\n")
            sys.stderr.flush()
        self.last = ""


def run_update(args: argparse.Namespace) -> int:
    """Fetch and install the DB-IP Lite files."""
    from netwatch.enrich.geo_paths import maxmind_account, update_dir
    from netwatch.enrich.update import KINDS, base_url, update_one

    account = maxmind_account()
    if account is not None:
        print(f"{account} has a MaxMind account: run `geoipupdate` for GeoIP2/GeoLite2 data")
    wanted = ["country", "asn"] + (["city"] if args.city else [])
    base = base_url(args.url)
    dest = update_dir()
    now = datetime.now(UTC)
    for name in wanted:
        bar = Bar()
        try:
            done = update_one(
                KINDS[name], dest, base=base, now=now, progress=bar, timeout=args.timeout
            )
        finally:
            bar.finish()
        kept = f"; previous copy kept as {done.previous.name}" if done.previous else ""
        print(f"installed {done.path} ({done.database_type}, built {_day(done.built)}){kept}")
    print(ATTRIBUTION)
    return 0
