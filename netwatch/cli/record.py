"""`netwatch record OUT --ticks N`: write live snapshots as the daemon streams them.

A recording is the delta protocol of `netwatch.stream`, one JSON line per tick: a full
`state` first, then one `delta` per tick. Recordings replay through `feed.ReplayFeed`
(dashboard `--replay`, tests), so this is how test fixtures of real machines are made.
`OUT` may be `-` for stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from netwatch import files
from netwatch.cli.common import add_geoip, amount
from netwatch.errors import DataFileError


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value}")
    return value


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the `record` subcommand."""
    parser = sub.add_parser(
        "record",
        help="write live snapshots to a JSONL file",
        description="Sample N ticks and write them as JSON lines: the whole first snapshot, "
        "then what changed each tick.",
    )
    parser.add_argument("out", metavar="OUT", help="output file, or - for stdout")
    parser.add_argument(
        "--ticks", type=_positive_int, default=1, help="how many snapshots (default 1)"
    )
    parser.add_argument(
        "--interval",
        type=amount("seconds", 3600, zero=True),
        default=1.0,
        metavar="S",
        help="seconds between snapshots (default 1)",
    )
    add_geoip(parser)
    parser.add_argument("--config", type=Path, metavar="FILE", help="config file (policy)")
    parser.add_argument(
        "--no-capture", action="store_true", help="sockets only, even when capture is allowed"
    )
    parser.add_argument(
        "--no-containers",
        action="store_true",
        help="this namespace's sockets only, not other network namespaces' (containers)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Tick the live engine `--ticks` times and write every snapshot."""
    from netwatch import codec
    from netwatch.cli import stages
    from netwatch.pipeline.build import build_live_engine
    from netwatch.pipeline.engine import LiveFeed
    from netwatch.sources.privileges import describe
    from netwatch.stream import StreamEncoder

    note = None
    detector = stages.detector(args.config)
    with _open(args.out) as out:
        enricher = stages.enricher(args.geoip_db)
        packets = stages.capture(enabled=not args.no_capture)
        try:
            engine = build_live_engine(
                enricher=enricher,
                detector=detector,
                packets=packets,
                containers=not args.no_containers,
            )
            encoder = StreamEncoder()
            for snap in LiveFeed(engine, interval=args.interval, ticks=args.ticks).snapshots():
                out.write(codec.frame(encoder.encode(snap)).decode("utf-8"))
                out.flush()
                note = describe(snap.status)
        finally:
            enricher.close()
            if packets is not None:
                packets.close()
    if note:
        sys.stderr.write(f"netwatch: {note}\n")
    return 0


@contextlib.contextmanager
def _open(name: str) -> Iterator[TextIO]:
    """stdout for `-`, else the file (created or truncated); failures are one line."""
    if name == "-":
        yield sys.stdout
        return
    try:
        fh = files.open_private(Path(name), "w", encoding="utf-8")
    except OSError as exc:
        raise DataFileError(f"cannot write {name}: {exc.strerror or exc}") from None
    with fh:
        yield fh
