"""`netwatch daemon`: the background service (composition root for `daemon.service`).

Builds the live engine through `pipeline.build.build_live_engine` (the same composition the
dashboard and `snapshot` use), a detector from the config and rules on disk, the store, the
socket server, the optional live sinks and metrics, and runs the loop until SIGTERM or
`--ticks`. SIGHUP rebuilds the detector from the files again.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from netwatch.cli.common import add_geoip, amount
from netwatch.config import EXPORT_FORMATS, FLOW_EXPORT_FORMATS, split_syslog_url

FULL_SAMPLE_EVERY = 5.0
"""Default seconds between full socket samples in the daemon while capture runs (see
`Engine.full_every`): a full sample of 2,000 sockets costs ~4 ms at 1 Hz, most of the
daemon's budget, while re-reading the few sockets with traffic costs microseconds."""

GC_THRESHOLDS = (50_000, 20, 100)
"""gc thresholds for the daemon process (see `_run`)."""


DEFAULTS: dict[str, Any] = {
    "interval": 1.0,
    "retention_days": 30.0,
    "hourly_after_days": 1.0,
    "max_db_mb": 256,
    "export_file": None,
    "export_format": "jsonl",
    "metrics_port": None,
    "interface": None,
    "full_sample_every": FULL_SAMPLE_EVERY,
    "flow_export_file": None,
    "flow_export_format": "jsonl",
    "flow_export_every": 300.0,
}
"""What a `[daemon]` key means when neither a flag nor the config sets it (None: off/all)."""


def _positive_int(text: str) -> int:
    if not text.isdecimal() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return int(text)


def _port(text: str) -> int:
    if not text.isdecimal() or not 0 < int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (1-65535)")
    return int(text)


def _syslog_target(text: str) -> Any:
    """`udp://host:port` or `tcp://host:port` (facility daemon)."""
    from netwatch.export.syslog import SyslogTarget

    parts = split_syslog_url(text)
    if parts is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not udp://HOST:PORT or tcp://HOST:PORT")
    proto, host, port = parts
    if not 0 < int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"{port!r} is not a port (1-65535)")
    return SyslogTarget(host=host.strip("[]"), port=int(port), protocol=proto)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the `daemon` subcommand."""
    p = sub.add_parser(
        "daemon",
        help="background service: store alerts, serve snapshots to the dashboard",
        description=(
            "Sample, detect and store alerts in a loop; stream snapshots to dashboards over a "
            "Unix socket. SIGTERM stops cleanly, SIGHUP reloads config, policy and rules."
        ),
    )
    p.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help=(
            "config file: policy, and [daemon] settings that flags override (default "
            "/etc/netwatch/config.toml only; the daemon never reads a user's config)"
        ),
    )
    p.add_argument("--db", type=Path, metavar="PATH", help="SQLite store (default: state dir)")
    p.add_argument("--socket", type=Path, metavar="PATH", help="Unix socket for dashboards")
    p.add_argument("--ticks", type=_positive_int, metavar="N", help="stop after N samples")
    p.add_argument(
        "--interval",
        type=amount("seconds", 3600),
        metavar="S",
        help="seconds per sample (default 1)",
    )
    p.add_argument(
        "--metrics-port", type=_port, metavar="P", help="serve Prometheus metrics on 127.0.0.1:P"
    )
    p.add_argument(
        "--export-file", type=Path, metavar="FILE", help="also append alerts to FILE (rotated)"
    )
    p.add_argument(
        "--export-format",
        choices=EXPORT_FORMATS,
        help="format of --export-file (default jsonl)",
    )
    p.add_argument(
        "--syslog", type=_syslog_target, metavar="URL", help="send alerts to udp://H:P or tcp://H:P"
    )
    p.add_argument(
        "--flow-export-file",
        type=Path,
        metavar="FILE",
        help="append flow records for a SIEM to FILE (rotated): one when a conversation ends",
    )
    p.add_argument(
        "--flow-export-format",
        choices=FLOW_EXPORT_FORMATS,
        help="format of --flow-export-file (default jsonl)",
    )
    p.add_argument(
        "--flow-export-every",
        type=amount("seconds", 86400, zero=True),
        metavar="S",
        help="also a record every S seconds while a conversation goes on (default 300; 0: off)",
    )
    p.add_argument(
        "--retention-days",
        type=amount("days", 36500),
        metavar="D",
        help="keep alerts and flow summaries D days (default 30)",
    )
    p.add_argument(
        "--hourly-after-days",
        type=amount("days", 36500),
        metavar="D",
        help="keep the usage history per minute D days, then per hour (default 1)",
    )
    p.add_argument(
        "--max-db-mb", type=_positive_int, metavar="M", help="store size cap (default 256)"
    )
    p.add_argument(
        "--no-capture", action="store_true", help="sample sockets only, no packet capture"
    )
    p.add_argument(
        "--no-containers",
        action="store_true",
        help="this namespace's sockets only, not other network namespaces' (containers)",
    )
    p.add_argument("--interface", metavar="IF", help="capture on IF only (default: all)")
    p.add_argument(
        "--full-sample-every",
        type=amount("seconds", 3600, zero=True),
        metavar="S",
        help=(
            "while capturing, list every socket each S seconds and in between re-read only "
            "the connections that had packets (default 5; 0: every tick)"
        ),
    )
    p.add_argument(
        "--no-privsep",
        action="store_true",
        help=(
            "as root, run everything in one root process instead of a privileged collector "
            "and an unprivileged analyzer (for debugging)"
        ),
    )
    add_geoip(p)
    p.set_defaults(func=run)


def apply_settings(args: argparse.Namespace, settings: Any) -> argparse.Namespace:
    """Fill what no flag set from the config's `[daemon]` section, then the defaults."""
    out = argparse.Namespace(**vars(args))
    for name, default in DEFAULTS.items():
        if getattr(out, name) is None:
            value = getattr(settings, name)
            setattr(out, name, default if value is None else value)
    if out.syslog is None and settings.syslog is not None:
        out.syslog = _syslog_target(settings.syslog)  # checked when the config was read
    out.no_capture = out.no_capture or settings.capture is False
    out.no_containers = out.no_containers or settings.containers is False
    return out


def run(args: argparse.Namespace) -> int:
    """Compose the daemon and run it until stopped."""
    from netwatch.config import load_config

    # system=True: under systemd the daemon runs as root, whose ~/.config must not override
    # /etc/netwatch/config.toml; only --config does (SIGHUP reloads the same file).
    config = load_config(args.config, system=True)
    settings = apply_settings(args, config.daemon)
    settings.notify = config.notify  # read now: the analyzer may not read the file later
    return _run(settings)


def _run(args: argparse.Namespace) -> int:
    from netwatch import paths
    from netwatch.cli import stages
    from netwatch.clock import SystemClock
    from netwatch.config import Config, config_files, config_from_text
    from netwatch.daemon import split
    from netwatch.daemon.metrics import Metrics
    from netwatch.daemon.notify import Notifier
    from netwatch.daemon.server import SnapshotServer
    from netwatch.daemon.service import Service, ServiceOptions
    from netwatch.daemon.sink_worker import SinkWorker
    from netwatch.errors import ConfigError
    from netwatch.export.flowlog import FlowReport, FlowReporter
    from netwatch.export.sinks import FileSink, FlowFileSink, Sink, SyslogSink
    from netwatch.model import Alert
    from netwatch.pipeline.build import build_live_engine
    from netwatch.sources.remote import CollectorLink, RemoteHostFacts
    from netwatch.store import Pruner, Retention, Store, StoredFirstSeen

    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="netwatch daemon: %(message)s"
    )
    # The daemon holds tens of thousands of long-lived objects (a flow per socket) and makes
    # as many short-lived ones each tick; at the default gen-0 threshold (700) the collector
    # re-walks survivors dozens of times a tick: bench/daemon.py measured a third of the
    # daemon's CPU at 10,000 connections (14.9% -> 10.5%). Cycles are rare here (frozen
    # dataclasses, tuples), and refcounting frees the rest at once.
    gc.set_threshold(*GC_THRESHOLDS)
    early_stop = _EarlyStop()
    clock = SystemClock()
    # As root the daemon splits (docs/architecture.md, section 7): the collector is forked
    # first, before any thread or file exists; this process opens what needs privileges and
    # then becomes the unprivileged analyzer. A user's own daemon has nothing to give up.
    link: CollectorLink | None = None
    user = None
    if os.geteuid() == 0 and not args.no_privsep:
        user = split.analyzer_user()
        link = split.start_collector(
            config_files(args.config, system=True)[0],
            watch_starts=not args.no_capture,
            socket_path=args.socket or paths.default_socket(),
            containers=not args.no_containers,
        )
    notify = getattr(args, "notify", None)
    desktop_helper = None
    if os.geteuid() == 0 and notify is not None and notify.desktop is not None:
        # Root talks to no user's desktop itself: a helper forked now, single-threaded,
        # delivers each note as its user (daemon/desktop_helper.py; section 7).
        from netwatch.daemon.desktop_helper import start_desktop_helper

        desktop_helper = start_desktop_helper(notify.desktop.open_command)
    try:
        store = Store(args.db or paths.default_db())
    except BaseException:
        _close_link(link)
        if desktop_helper is not None:
            desktop_helper.close()
        raise
    first_seen = StoredFirstSeen(store)
    own = () if link is None or link.pid is None else (link.pid,)

    def build_detector() -> Any:
        loaded = None
        if link is not None and os.geteuid() != 0:  # reload in the analyzer: ask the collector
            source, text = link.config_text()
            if text is not None and source is not None:
                loaded = config_from_text(text, source)
            elif args.config is not None:
                raise ConfigError(f"{args.config}: no such config file")
            else:
                loaded = Config()
        return stages.detector(args.config, first_seen, system=True, loaded=loaded, own_pids=own)

    packets = None
    try:
        detector = build_detector()
        if link is None:
            packets = stages.capture(args.interface, enabled=not args.no_capture)
        elif not args.no_capture:
            packets = split.open_capture(args.interface, link)
        engine = build_live_engine(
            clock=clock,
            sockets=None if link is None else link.sockets,
            enricher=stages.enricher(args.geoip_db),
            detector=detector,
            packets=packets,
            host=None if link is None else RemoteHostFacts(link),
            full_every=args.full_sample_every,
            containers=not args.no_containers,
        )
        sinks: list[Sink[Alert]] = []
        if args.export_file:
            sinks.append(FileSink(args.export_file, args.export_format))
        if args.syslog:
            sinks.append(SyslogSink(args.syslog))
        flow_sinks: list[Sink[FlowReport]] = []
        if args.flow_export_file:  # opened here, as root, like the alert export (section 7)
            flow_sinks.append(FlowFileSink(args.flow_export_file, args.flow_export_format))
        # Only the default socket's folder (/run/netwatch without systemd) is made here.
        server = SnapshotServer(args.socket or paths.default_socket(), make_dir=not args.socket)
        notifier = Notifier()
        if link is not None and user is not None:
            notifier.connect()
            made = server.path.lstat()
            link.own_socket(made.st_dev, made.st_ino)
            split.become_analyzer(user, link)  # before any thread starts (they would keep root)
            if packets is not None:
                packets.capture.start()
    except BaseException:
        if packets is not None:
            packets.close()
        store.close()
        _close_link(link)
        if desktop_helper is not None:
            desktop_helper.close()
        raise
    # After the drop (threads start here, with the analyzer's credentials): section 7.
    notifications = _notifications(notify, clock, desktop_helper)
    metrics = None
    if args.metrics_port:
        metrics = Metrics()
        metrics.serve(args.metrics_port)
    retention = Retention(
        args.retention_days * 86400.0,
        args.max_db_mb * 1024 * 1024,
        hourly_after=args.hourly_after_days * 86400.0,
    )
    pruner = Pruner(store, retention, clock.now)
    service = Service(
        engine,
        build_detector,
        store,
        server,
        clock,
        options=ServiceOptions(interval=args.interval, ticks=args.ticks),
        sinks=SinkWorker(sinks),  # threads start only now: after the analyzer's switch
        flow_log=(
            (FlowReporter(args.flow_export_every), SinkWorker(flow_sinks, name="netwatch-flowlog"))
            if flow_sinks
            else None
        ),
        notifications=notifications,
        notifier=notifier,
        metrics=metrics,
        first_seen=first_seen,
        background=(pruner,),
    )
    early_stop.hand_over(service.request_stop)
    pruner.start()
    try:
        return service.run()  # its loop closes the engine, and so capture, when it ends
    finally:
        _close_link(link)


def _notifications(settings: Any, clock: Any, desktop_helper: Any = None) -> Any:
    """One worker per `[notify]` channel (none when the section names no channel).

    The desktop channel is the root helper's (`desktop_helper`) when the daemon started as
    root, else this process's own connection to the buses it can reach (its user's).
    """
    from netwatch.notify.worker import ChannelWorker, Notifications

    if settings is None or not settings.enabled:
        return Notifications(())
    from netwatch.notify.command import CommandChannel
    from netwatch.notify.desktop import DesktopChannel
    from netwatch.notify.webhook import WebhookChannel

    workers = []
    if settings.desktop is not None:
        desktop = desktop_helper or DesktopChannel(settings.desktop.open_command)
        workers.append(ChannelWorker(desktop, settings.desktop.selection, settings, clock))
    if settings.webhook is not None:
        w = settings.webhook
        hook = WebhookChannel(w.url, w.shape, retries=w.retries, timeout=w.timeout)
        workers.append(ChannelWorker(hook, w.selection, settings, clock))
    if settings.command is not None:
        c = settings.command
        workers.append(
            ChannelWorker(CommandChannel(c.argv, c.timeout), c.selection, settings, clock)
        )
    return Notifications(workers)


def _close_link(link: Any) -> None:
    """Close the channel to the collector (it exits on end of stream) and reap it."""
    if link is None:
        return
    from netwatch.daemon.split import reap

    link.close()
    if link.pid is not None:
        reap(link.pid)


class _EarlyStop:
    """Catches SIGTERM/SIGINT during start-up (store, capture, socket) and passes it on.

    The socket exists before the service installs its own handlers; a stop asked for in
    between must still flush and exit 0, not kill the process half-started.
    """

    def __init__(self) -> None:
        self._requested = False
        self._target: Callable[[], None] | None = None
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)

    def _handle(self, _sig: int, _frame: FrameType | None) -> None:
        if self._target is not None:
            self._target()
        else:
            self._requested = True

    def hand_over(self, request_stop: Callable[[], None]) -> None:
        """From now on a stop goes to `request_stop`; one that came earlier goes now."""
        self._target = request_stop
        if self._requested:
            request_stop()
