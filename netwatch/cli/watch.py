"""`netwatch [watch]`: the dashboard, on the daemon, a live in-process engine, or a recording.

Picks the feed and injects it (architecture.md section 5): `--replay FILE` plays a recording,
`--attach SOCKET` attaches to a daemon, `--live` samples in-process; with neither, it attaches
when the daemon's socket answers and samples in-process otherwise. Textual, the engine and
the daemon client are imported only here, inside `run`.
"""

from __future__ import annotations

import argparse
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from netwatch.cli.common import add_geoip
from netwatch.errors import NetwatchError, UsageError

if TYPE_CHECKING:
    from netwatch.feed import SnapshotFeed
    from netwatch.pipeline import Enricher


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the `watch` subcommand (also what `netwatch` with no command runs)."""
    parser = sub.add_parser(
        "watch",
        help="the dashboard (the default command)",
        description="Live dashboard: which process talks to whom, where, how much, and alerts.",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--attach", metavar="SOCKET", type=Path, help="attach to the daemon listening on SOCKET"
    )
    source.add_argument(
        "--live", action="store_true", help="sample in-process even if a daemon is running"
    )
    source.add_argument(
        "--replay", metavar="FILE", type=Path, help="play a recording written by `netwatch record`"
    )
    parser.add_argument(
        "--interval",
        metavar="S",
        type=float,
        default=1.0,
        help="seconds between samples (live) or snapshots (replay; default 1)",
    )
    add_geoip(parser)
    parser.set_defaults(func=run)


def socket_answers(path: Path, timeout: float = 0.5) -> bool:
    """True when something accepts connections on the Unix socket `path`."""
    if not path.exists():
        return False
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(path))
    except OSError:
        return False
    finally:
        sock.close()
    return True


def _daemon_feed(path: Path) -> SnapshotFeed:
    try:
        from netwatch.daemon.client import DaemonFeed
    except ImportError:
        raise NetwatchError("attaching to the daemon is not available in this build") from None
    return DaemonFeed(path)


def _live_feed(args: argparse.Namespace) -> SnapshotFeed:
    from netwatch.pipeline import LiveFeed
    from netwatch.pipeline.build import build_live_engine

    engine = build_live_engine(enricher=_enricher(args.geoip_db))
    return LiveFeed(engine, interval=args.interval)


def _enricher(paths: list[str]) -> Enricher | None:
    """The enricher for `--geoip-db` files and the bundled data, when enrichment is built."""
    try:
        from netwatch.pipeline import build
    except ImportError:  # pragma: no cover  # the pipeline is part of every build
        return None
    make = getattr(build, "build_enricher", None)
    if make is None:
        return None
    enricher: Enricher = make(geoip_db=[Path(p) for p in paths])
    return enricher


def choose_feed(args: argparse.Namespace) -> tuple[SnapshotFeed, str]:
    """Pick the feed and its mode label from the flags (see the module docstring)."""
    from netwatch import paths
    from netwatch.feed import ReplayFeed

    if args.replay is not None:
        return ReplayFeed.from_file(args.replay, pace=args.interval), "replay"
    if args.attach is not None:
        if not socket_answers(args.attach):
            raise NetwatchError(f"no netwatch daemon answers on {args.attach}")
        return _daemon_feed(args.attach), "daemon"
    if not args.live:
        default = paths.default_socket()
        if socket_answers(default):
            try:
                return _daemon_feed(default), "daemon"
            except NetwatchError:
                pass
    return _live_feed(args), "local"


def run(args: argparse.Namespace) -> int:
    """Open the dashboard on the chosen feed."""
    if not args.interval > 0:
        raise UsageError(f"--interval must be a positive number of seconds, not {args.interval}")
    feed, mode = choose_feed(args)
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        feed.close()
        raise NetwatchError(
            "the dashboard needs a terminal; for plain output use `netwatch snapshot`"
        )
    from netwatch.ui import run_dashboard

    run_dashboard(feed, mode)
    return 0
