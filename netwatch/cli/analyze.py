"""`netwatch analyze FILE...`: capture files through the pipeline, as flows then alerts.

JSONL is one codec flow record per flow (in the order flows finish), then one alert record
per alert. The table prints one row per flow as flows finish, then the alerts, then a
summary line. Several files (or a folder: its `*.pcap`, `*.pcapng` and `*.cap` files) are
analysed one after the other, each on its own (flows never join across files); the table
heads each with its name and JSONL records carry a `file` key.

A missing, unreadable or corrupt file, or one whose link type netwatch cannot decode, is one
line on stderr and exit 1, and the other files are still analysed (flows finished before the
corruption was met are still printed, as tshark does). A file that just ends inside a record
(a capture cut short) is read as far as it goes: one warning line, and exit 1 only when
nothing could be read from it. A damaged data file (list history, GeoIP file) is left out and
named after the output, one line each, exit 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from netwatch.cli.common import add_format, add_geoip, label_note, report_skipped
from netwatch.errors import EXIT_RUNTIME

if TYPE_CHECKING:
    from netwatch.enrich.enricher import Enricher


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the `analyze` subcommand."""
    parser = sub.add_parser(
        "analyze",
        help="run pcap/pcapng files through the pipeline: labelled flows, then alerts",
        description=(
            "Read pcap or pcapng captures and print their flows (with application labels, "
            "VPN recognition and what is known about the remote side), then the alerts."
        ),
    )
    parser.add_argument(
        "files",
        nargs="+",
        metavar="FILE",
        help="a pcap or pcapng capture file, or a folder of them (*.pcap, *.pcapng, *.cap)",
    )
    add_format(parser)
    add_geoip(parser)
    parser.add_argument(
        "--ui", action="store_true", help="open the result in the dashboard instead of printing"
    )
    parser.add_argument(
        "--db", type=Path, metavar="PATH", help="also store the alerts in this SQLite store"
    )
    parser.set_defaults(func=run)


def build_enricher(geoip_dbs: list[str]) -> Enricher:
    """The enricher, with any `--geoip-db` files first (one for all the files analysed)."""
    from netwatch.enrich.enricher import build_enricher as build

    return build(geoip_dbs=[Path(p) for p in geoip_dbs])


CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap")
"""The files of a folder that `analyze` reads (others, such as notes or labels, are not)."""


def capture_paths(names: list[str]) -> list[str]:
    """The files to analyse: each FILE as given, each folder's capture files in name order.

    A folder with no capture file in it is an error, as a missing file is.
    """
    from netwatch.errors import DataFileError, Location

    out: list[str] = []
    for name in names:
        path = Path(name)
        if not path.is_dir():
            out.append(name)
            continue
        try:
            found = sorted(
                str(p)
                for p in path.iterdir()
                if p.name.lower().endswith(CAPTURE_SUFFIXES) and not p.is_dir()
            )
        except OSError as exc:
            raise DataFileError(f"cannot list: {exc.strerror or exc}", Location(name)) from None
        if not found:
            raise DataFileError(
                "is a folder with no capture files (*.pcap, *.pcapng, *.cap)", Location(name)
            )
        out += found
    return out


def run(args: argparse.Namespace) -> int:
    """Analyze each file and print it in the chosen format; exit 1 if any could not be."""
    from netwatch.errors import UsageError

    paths = capture_paths(list(args.files))
    if args.ui and len(paths) != 1:
        raise UsageError(f"--ui shows one capture file; {len(paths)} were given")
    enricher = build_enricher(list(args.geoip_db))
    failed = False
    try:
        for path in paths:
            failed |= _analyze_one(path, args, enricher, several=len(paths) > 1)
        skipped = enricher.skipped()
    finally:
        enricher.close()
    return report_skipped(skipped) or (EXIT_RUNTIME if failed else 0)


def _analyze_one(path: str, args: argparse.Namespace, enricher: Enricher, *, several: bool) -> bool:
    """Print one file's flows and alerts; True when it could not be (fully) read.

    Each file gets its own detector, so one capture's flows never raise another's alerts.
    """
    from netwatch.detect.engine import RuleEngine
    from netwatch.pipeline.offline import AnalysisStats, analyze_file
    from netwatch.sources.pcapfile import PcapError

    if several and args.format != "jsonl" and not args.ui:
        sys.stdout.write(f"==> {path} <==\n")
    stats = AnalysisStats()
    try:
        items = analyze_file(path, enricher=enricher, detector=RuleEngine(), stats=stats)
        if args.db is not None:
            items = _storing(items, args.db)
        if args.ui:
            return _run_ui(items, path) != 0
        if args.format == "jsonl":
            _write_jsonl(items, sys.stdout, path if several else None)
        else:
            _write_table(items, sys.stdout, stats)
    except PcapError as exc:
        sys.stdout.flush()
        sys.stderr.write(f"netwatch: {exc}\n")
        return True
    finally:
        if several and args.format != "jsonl":
            sys.stdout.write("\n")
            sys.stdout.flush()
    if stats.cut_short is not None:
        read = "nothing could be read" if stats.frames == 0 else "what it holds was analysed"
        sys.stderr.write(f"netwatch: warning: {stats.cut_short}; {read}\n")
        return stats.frames == 0
    return False


def _storing(items: Iterator[Any], db: Path) -> Iterator[Any]:
    """Pass items through; when the file is done, commit its alerts to the store at `db`."""
    import time

    from netwatch.model import Alert
    from netwatch.store import store_alerts

    alerts: list[Alert] = []
    for item in items:
        if isinstance(item, Alert):
            alerts.append(item)
        yield item
    store_alerts(db, alerts, now=time.time())


def _write_jsonl(items: Iterator[Any], out: TextIO, file: str | None = None) -> None:
    """One record a line; with several files, each record names its `file`."""
    from netwatch import codec
    from netwatch.model import Alert

    for item in items:
        record = codec.alert_to_dict(item) if isinstance(item, Alert) else codec.flow_to_dict(item)
        if file is not None:
            record["file"] = file
        out.write(json.dumps(record, separators=(",", ":")))
        out.write("\n")
    out.flush()


_COLUMNS = (
    ("PROTO", 5),
    ("INITIATOR", 40),
    ("RESPONDER", 40),
    ("APP", 12),
    ("VPN", 3),
    ("CONF", 6),
    ("BY", 24),
    ("PKTS OUT/IN", 13),
    ("BYTES OUT/IN", 17),
    ("NAME", 30),
    ("WHERE", 0),
)


def _cell(value: str, width: int) -> str:
    if width == 0:
        return value
    if len(value) > width:
        value = value[: width - 1] + "~"
    return value.ljust(width)


def _row(values: tuple[str, ...]) -> str:
    return " ".join(_cell(v, w) for v, (_, w) in zip(values, _COLUMNS, strict=True)).rstrip()


def _flow_row(record: dict[str, Any]) -> str:
    def endpoint(ip: str | None, port: int | None) -> str:
        if ip is None:
            return "-"
        host = f"[{ip}]" if ":" in ip else ip
        return f"{host}:{port}" if port else host

    remote = record.get("remote") or {}
    where = " ".join(
        str(x)
        # The narrowest group is enough here (5 Eyes implies 9 and 14); JSONL has them all.
        for x in (remote.get("country"), remote.get("as_org"), *remote.get("jurisdiction", ())[:1])
        if x
    )
    cert = record.get("tls_cert") or {}
    name = record.get("sni") or record.get("dns_name") or record.get("http_host") or ""
    name = name or cert.get("subject") or ""  # a VPN dialled by address names itself there
    return _row(
        (
            record["transport"],
            endpoint(record["src"], record["sport"]),
            endpoint(record["dst"], record["dport"]),
            record["app"] or "-",
            "yes" if record["vpn"] else "",
            record["confidence"] or "",
            ",".join(dict.fromkeys(e["name"] for e in record["evidence"])),
            f"{record['packets_sent']}/{record['packets_received']}",
            f"{record['bytes_sent']}/{record['bytes_received']}",
            name,
            where or "-",
        )
    )


def _write_table(items: Iterator[Any], out: TextIO, stats: Any) -> None:
    from netwatch import codec
    from netwatch.model import Alert

    out.write(_row(tuple(name for name, _ in _COLUMNS)) + "\n")
    alerts: list[Alert] = []
    for item in items:
        if isinstance(item, Alert):
            alerts.append(item)
            continue
        out.write(_flow_row(codec.flow_to_dict(item)) + "\n")
    if alerts:
        out.write("\nALERTS\n")
        for a in alerts:
            count = f" (x{a.count})" if a.count > 1 else ""
            note = label_note(a)
            out.write(f"{a.severity.value.upper():8} {a.rule_id}: {a.message}{count}{note}\n")
    out.write(
        f"\n{stats.packets} packets, {stats.flows} flows, {len(alerts)} alerts"
        + (f", {stats.skipped} non-IP frames skipped" if stats.skipped else "")
        + "\n"
    )
    out.flush()


def _run_ui(items: Iterator[Any], path: str) -> int:
    """Show the whole analysis as one snapshot in the dashboard (helper H7's entry point)."""
    from netwatch.model import Alert, EnrichedFlow, Snapshot, SourceStatus
    from netwatch.ui import run_snapshots

    flows: list[EnrichedFlow] = []
    alerts: list[Alert] = []
    for item in items:
        (alerts if isinstance(item, Alert) else flows).append(item)
    taken = max((f.flow.last_seen or 0.0 for f in flows), default=0.0)
    snapshot = Snapshot(
        seq=1,
        taken_at=taken,
        interval=0.0,
        flows=tuple(flows),
        alerts=tuple(alerts),
        status=SourceStatus(mode="pcap", capture_reason=f"analyzing {path}"),
    )
    run_snapshots([snapshot], "pcap", title=f"netwatch analyze {Path(path).name}")
    return 0
