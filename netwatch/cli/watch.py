"""`netwatch [watch]`: the dashboard, on the daemon, a live in-process engine, or a recording.

Picks the feed and injects it (docs/architecture.md, "The dashboard and its feeds"): `--replay FILE`
plays a recording, `--attach SOCKET` attaches to a daemon, `--live` samples in-process; with
neither, it attaches when a daemon's socket answers (this user's or the system service's) and
samples in-process otherwise. The in-process engine is composed like the daemon's: sockets, packet
capture when privileged, enrichment (`--geoip-db`, RDAP only with `--rdap`), the rule pack and the
policy. Textual, the engine and the daemon client are imported only inside `run`.

The check screen (`v`) runs `netwatch check` on this machine when it opens: in local and
daemon mode (the daemon socket is local, so it is the same machine); a replay is another
time, maybe another machine, so there the screen says the check is unavailable.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from netwatch.cli.common import add_geoip
from netwatch.errors import CaptureUnavailableError, NetwatchError, UsageError
from netwatch.model.alert import ALERT_ID

if TYPE_CHECKING:
    from netwatch.feed import FindingsSource, SnapshotFeed
    from netwatch.pipeline import Detector, Enricher, PacketFlows
    from netwatch.ui.screens.history import HistorySource

log = logging.getLogger("netwatch.watch")


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
    parser.add_argument(
        "--no-capture", action="store_true", help="do not capture packets (sockets only)"
    )
    parser.add_argument(
        "--no-containers",
        action="store_true",
        help="this namespace's sockets only, not other network namespaces' (containers)",
    )
    parser.add_argument(
        "--rdap",
        action="store_true",
        help="look up network owners over RDAP in the background (sends addresses to the RIRs)",
    )
    parser.add_argument("--config", type=Path, metavar="FILE", help="config file (policy)")
    parser.add_argument(
        "--db",
        type=Path,
        metavar="FILE",
        help=(
            "the store the history screen reads, and open it first (default: the daemon's "
            "store, when this user can read it)"
        ),
    )
    parser.add_argument(
        "--alert",
        metavar="ALERT_ID",
        type=alert_id,
        help="open on this alert (a desktop notification's open action passes its id)",
    )
    add_geoip(parser)
    parser.set_defaults(func=run)


def alert_id(text: str) -> str:
    """`--alert`'s value: an alert id (`model.alert.ALERT_ID`), refused before the UI starts."""
    if not ALERT_ID.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an alert id (rule:digest:time, "
            "e.g. vpngate.relay_inbound:0a1b2c3d4e:1700000004)"
        )
    return text


def _daemon_feed(path: Path) -> SnapshotFeed:
    from netwatch.daemon.client import DaemonFeed

    return DaemonFeed(path)


def _capture(args: argparse.Namespace) -> PacketFlows | None:
    """Packet capture when allowed; without privileges the status line says why it is off."""
    if args.no_capture:
        return None
    from netwatch.pipeline.capture_flows import CaptureFlows

    try:
        return CaptureFlows.open()
    except CaptureUnavailableError as exc:
        log.info("packet capture off: %s", exc)
        return None


def _enricher(args: argparse.Namespace) -> Enricher:
    from netwatch.enrich.enricher import build_enricher

    return build_enricher(geoip_dbs=[Path(p) for p in args.geoip_db], rdap=args.rdap)


def _detector(args: argparse.Namespace) -> Detector:
    from netwatch.cli import stages

    return stages.detector(args.config)


def _live_feed(args: argparse.Namespace) -> SnapshotFeed:
    from netwatch.pipeline import LiveFeed
    from netwatch.pipeline.build import build_live_engine

    enricher, detector = _enricher(args), _detector(args)
    engine = build_live_engine(
        enricher=enricher,
        detector=detector,
        packets=_capture(args),
        containers=not args.no_containers,
    )
    return LiveFeed(engine, interval=args.interval)


def choose_feed(
    args: argparse.Namespace, *, need_terminal: bool = True
) -> tuple[SnapshotFeed, str]:
    """Pick the feed and its mode label from the flags (see the module docstring).

    Bad files and sockets are reported before the terminal check, so `--replay missing.jsonl`
    names the file even when stdout is not a terminal; the live engine is built last.
    """
    from netwatch.daemon.client import find_daemon_socket
    from netwatch.feed import ReplayFeed

    feed: SnapshotFeed | None = None
    mode = "local"
    if args.replay is not None:
        feed, mode = ReplayFeed.from_file(args.replay, pace=args.interval), "replay"
    elif args.attach is not None:
        if find_daemon_socket(args.attach) is None:
            raise NetwatchError(f"no netwatch daemon answers on {args.attach}")
        feed, mode = _daemon_feed(args.attach), "daemon"
    elif not args.live:
        found = find_daemon_socket()
        if found is not None:
            feed, mode = _daemon_feed(found), "daemon"
    if need_terminal and not (sys.stdin.isatty() and sys.stdout.isatty()):
        if feed is not None:
            feed.close()
        raise NetwatchError(
            "the dashboard needs a terminal; for plain output use `netwatch snapshot`"
        )
    return (feed if feed is not None else _live_feed(args)), mode


def check_source(mode: str) -> FindingsSource | None:
    """What the check screen runs: this machine's check, except in a replay (module docstring)."""
    from netwatch.cli.check import check_machine

    return None if mode == "replay" else check_machine


AWAY_DEFAULT = 86400.0
""""While you were away" the first time a dashboard opens on a store: the last day."""


def history_source(
    db: Path | None, mode: str, now: float, daemon: Path | None = None
) -> HistorySource | None:
    """The history screen's source: `--db FILE`, else the default store (this user's, or the
    system daemon's when readable) unless this is a replay (another time); attached to a
    daemon (`daemon`: its socket) whose store this user may not read, the daemon itself over
    its socket (`DaemonHistory`). Opening it here records this attach for the next
    "while you were away" (kept by store file, or by socket when asking the daemon)."""
    import os

    from netwatch import paths
    from netwatch.cli.export import default_store
    from netwatch.cli.history import StoreHistory, last_attached

    state = paths.state_dir() / "dashboard.json"
    if db is None:
        if mode == "replay":
            return None
        try:
            found: Path | None = default_store(paths.default_db())
            readable = found is not None and os.access(found, os.R_OK)
        except OSError:  # a folder on the way this user may not search
            found, readable = None, False
        if found is not None and readable:
            db = found
        else:
            if daemon is None:
                return None
            from netwatch.daemon.client import DaemonHistory

            before = last_attached(daemon, now, state)
            return DaemonHistory(daemon, now - AWAY_DEFAULT if before is None else before)
    before = last_attached(db, now, state)
    return StoreHistory(db, now - AWAY_DEFAULT if before is None else before)


def _socket_of(feed: SnapshotFeed) -> Path | None:
    """The daemon socket a feed reads, when it is a daemon's."""
    from netwatch.daemon.client import DaemonFeed

    return feed.path if isinstance(feed, DaemonFeed) else None


def run(args: argparse.Namespace) -> int:
    """Open the dashboard on the chosen feed."""
    import time

    if not args.interval > 0:
        raise UsageError(f"--interval must be a positive number of seconds, not {args.interval}")
    if args.db is not None and not args.db.exists():
        raise NetwatchError(f"no netwatch database at {args.db}")
    feed, mode = choose_feed(args)
    from netwatch.ui import run_dashboard

    run_dashboard(
        feed,
        mode,
        check=check_source(mode),
        history=history_source(args.db, mode, time.time(), _socket_of(feed)),
        open_history=args.db is not None,
        focus_alert=args.alert,
    )
    return 0
