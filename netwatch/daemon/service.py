"""The daemon loop: tick the engine, commit alerts, then announce them; stream snapshots.

A plain loop in the main thread (never Textual). Order per tick is the durability contract:
the engine ticks, the tick's alerts are committed to the store (synchronous=FULL), and only
then are they announced (socket clients, live sinks, metrics). So every alert a client has
seen is on disk, even if the daemon is killed right after. Flow summaries are batched and
written every `flow_flush` seconds and at shutdown, with the usage history's rows
(`store/rollup.py`) in the same transaction: they are bulky and not a promise. The
flow log for a SIEM (`export.flowlog`: a record when a conversation ends and every
`active_timeout` while it goes on, a last one for each open conversation at shutdown) is
handed to its own sink worker each tick, never waited for.

Signals only set flags; `signal.set_wakeup_fd` wakes the select in `SnapshotServer.poll`, so
SIGTERM/SIGINT stop within one tick plus the flush, and SIGHUP rebuilds the engine from the
config and rules on disk (a bad reload logs one line and keeps the running engine).
"""

from __future__ import annotations

import logging
import secrets
import signal
import socket
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from types import FrameType
from typing import Protocol

from netwatch import codec
from netwatch.clock import Clock
from netwatch.daemon.history import QUERY_TIME, HistoryWorker
from netwatch.daemon.metrics import Metrics
from netwatch.daemon.notify import Notifier
from netwatch.daemon.server import SnapshotServer
from netwatch.daemon.sink_worker import SinkWorker
from netwatch.errors import NetwatchError
from netwatch.export.flowlog import FlowReport, FlowReporter
from netwatch.model import Alert, EnrichedFlow, FlowKey, Snapshot
from netwatch.model.versions import Filed
from netwatch.notify.worker import Notifications
from netwatch.pipeline import Detector
from netwatch.store import Store
from netwatch.store.first_seen import KIND as FIRST_SEEN
from netwatch.store.rollup import Rollups
from netwatch.stream import StreamEncoder

log = logging.getLogger("netwatch.daemon")

SERVE_SHARE = 0.2
"""Least share of an interval between ticks that is left to serving socket clients."""

SHUTDOWN_WAIT = 5.0
"""Seconds, in all, that the flow log's last records (one per open conversation) may wait
for its writer at shutdown instead of being dropped when they outnumber its queue; past
that they are dropped (counted), so a stuck writer cannot hold up the stop."""


class Ticker(Protocol):
    """What the loop needs from the engine: one snapshot per call, a swappable detector."""

    detector: Detector | None

    def tick(self) -> Snapshot:
        """Sample, enrich, detect; return the snapshot."""
        ...

    def close(self) -> None:
        """Release what sampling holds (capture threads, sockets); called once at the end."""
        ...


class Stoppable(Protocol):
    """A background helper (the retention pruner) stopped before the store closes."""

    def stop(self) -> None:
        """Stop and wait for the current step."""
        ...


class FactQueue(Protocol):
    """First-seen facts learned by the rules, waiting to be committed with the tick's alerts."""

    def take_pending(self) -> list[tuple[str, float]]:
        """The keys learned since the last call."""
        ...


class _Row:
    """One buffered flow summary: the latest flow object, first and last seen."""

    __slots__ = ("ef", "first", "last")

    def __init__(self, ef: EnrichedFlow, first: float) -> None:
        self.ef = ef
        self.first = first
        self.last = first


_LISTENING = _Row.__new__(_Row)
"""The row of a listening socket's flow: not a conversation, never saved (no fields set)."""


DetectorFactory = Callable[[], Detector]
"""Builds a detector from the config, policy and rules on disk (raises NetwatchError)."""


@dataclass(frozen=True, slots=True)
class ServiceOptions:
    """Loop timing and bounds."""

    interval: float = 1.0
    ticks: int | None = None
    flow_flush: float = 30.0
    """Seconds between flow-summary writes."""
    recent_alerts: int = 1000
    """Alerts kept in memory to greet a newly attached client."""
    history: bool = True
    """Answer clients' history requests from the store (`daemon/history.py`)."""
    query_time: float = QUERY_TIME
    """Seconds one history request may run."""


class Service:
    """Owns the loop; everything it drives is injected."""

    def __init__(
        self,
        engine: Ticker,
        build_detector: DetectorFactory | None,
        store: Store,
        server: SnapshotServer,
        clock: Clock,
        *,
        options: ServiceOptions = ServiceOptions(),
        sinks: SinkWorker[Alert] | None = None,
        flow_log: tuple[FlowReporter, SinkWorker[FlowReport]] | None = None,
        notifications: Notifications | None = None,
        notifier: Notifier | None = None,
        metrics: Metrics | None = None,
        first_seen: FactQueue | None = None,
        background: Sequence[Stoppable] = (),
    ) -> None:
        self._background = background
        self._build = build_detector
        self.engine = engine
        self.first_seen = first_seen
        self.store = store
        self.server = server
        self.clock = clock
        self.options = options
        self.sinks: SinkWorker[Alert] = sinks or SinkWorker(())
        self.flow_log = flow_log
        """When a flow record is due (`FlowReporter`) and who writes it (`FlowFileSink`s)."""
        self.notifications = notifications or Notifications(())
        """People told of alerts (`[notify]`): each channel's queue and thread, never the
        tick's time."""
        self.notifier = notifier or Notifier({})
        self.metrics = metrics
        self.ticks_done = 0
        self.announced = 0
        self._stop = False
        self._reload = False
        self._flows: dict[FlowKey, _Row] = {}
        """Each conversation's latest flow, first and last seen, until the next flush."""
        self._flow_rows: Filed[_Row] = Filed()
        """Last tick's flow versions (`EnrichedFlow.version`) -> their row; `_seen_at` is
        when they were last seen."""
        self._strays: list[_Row] = []
        """Rows of last tick's flows that had no serial (not kept by version): stamped as
        last seen at the next tick, and again at the flush while they go on."""
        self._seen_at = 0.0
        self.usage = Rollups()
        """Per-minute usage history from each tick's flow deltas, written at the flush."""
        self._last_flush = clock.monotonic()
        self._recent: OrderedDict[str, Alert] = OrderedDict()
        self._last: Snapshot | None = None
        self._greeting_line: bytes | None = None
        """The `state` built from `_last`, once a client asked for it (`_greeting`)."""
        self._skipped: frozenset[str] = frozenset()
        """Damaged data files already logged (each is logged once, when first skipped)."""
        self._stream = StreamEncoder(stream=secrets.token_hex(8))
        """The one stream every client reads: its deltas are the same bytes for all."""
        self._streamed: Snapshot | None = None
        """The last snapshot `_stream` encoded: it skips ticks while no client listens."""
        server.set_greeting(self._greeting)
        self.history: HistoryWorker | None = None
        """Runs clients' history requests off the tick path; answers are moved by the loop."""
        if options.history:
            self.history = HistoryWorker(store.reader(), time_limit=options.query_time)
            server.set_requests(self.history.submit, self.history.forget)
            server.add_wakeup(self.history.wakeup)

    # ------------------------------------------------------------------ signals

    def stop_requested(self) -> bool:
        """Whether a stop was requested (a signal handler may set it at any time)."""
        return self._stop

    def request_stop(self, *_: object) -> None:
        """Ask the loop to stop after the current tick (SIGTERM, SIGINT)."""
        self._stop = True

    def request_reload(self, *_: object) -> None:
        """Ask the loop to reload config and rules before the next tick (SIGHUP)."""
        self._reload = True

    def _install_signals(self) -> socket.socket:
        rsock, wsock = socket.socketpair()
        rsock.setblocking(False)
        wsock.setblocking(False)
        signal.set_wakeup_fd(wsock.fileno(), warn_on_full_buffer=False)
        self.server.add_wakeup(rsock)
        self._wsock = wsock

        def stop(_sig: int, _frame: FrameType | None) -> None:
            self.request_stop()

        def hup(_sig: int, _frame: FrameType | None) -> None:
            self.request_reload()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, hup)
        return rsock

    # ------------------------------------------------------------------ loop

    def run(self) -> int:
        """Loop until stopped or `ticks` are done; flush and return the exit code (0)."""
        rsock = self._install_signals()
        self.notifier.ready(f"watching; store {self.store.path}; socket {self.server.path}")
        log.info("daemon ready: store %s, socket %s", self.store.path, self.server.path)
        try:
            next_tick = self.clock.monotonic()
            while not self.stop_requested():
                wait = next_tick - self.clock.monotonic()
                if wait > 0:
                    self.server.poll(wait)
                    self.answer_history()
                    if self.stop_requested():
                        break
                if self._reload:
                    self._do_reload()
                if self.clock.monotonic() < next_tick:
                    continue
                self.tick_once()
                if self.options.ticks is not None and self.ticks_done >= self.options.ticks:
                    break
                # A tick longer than the interval still leaves a fifth of an interval to serve
                # socket clients; otherwise they would starve (and be dropped) under load.
                next_tick = max(
                    next_tick + self.options.interval,
                    self.clock.monotonic() + SERVE_SHARE * self.options.interval,
                )
        finally:
            self.notifier.stopping()
            self.shutdown()
            signal.set_wakeup_fd(-1)
            rsock.close()
            self._wsock.close()
        return 0

    def answer_history(self) -> None:
        """Queue the history answers the worker finished to the clients that asked."""
        if self.history is not None:
            for client, line in self.history.take():
                self.server.answer(client, line)

    def tick_once(self) -> Snapshot:
        """One tick: engine, store (committed), then announce."""
        snap = self.engine.tick()
        now = snap.taken_at
        facts = {FIRST_SEEN: self.first_seen.take_pending()} if self.first_seen else {}
        self.store.save_tick(snap.alerts, facts, now)
        self._buffer_flows(snap, now)
        self.usage.add(snap.flows, now, snap.changes)
        if self.flow_log is not None:
            reporter, writer = self.flow_log
            for report in reporter.observe(snap.flows, now):
                writer.put(report)
        if self.clock.monotonic() - self._last_flush >= self.options.flow_flush:
            self.flush_flows()
        self._announce(snap)
        self.ticks_done += 1
        return snap

    def _announce(self, snap: Snapshot) -> None:
        snap = replace(snap, status=replace(snap.status, mode="daemon"))
        if snap.status.skipped and not self._skipped.issuperset(snap.status.skipped):
            for line in snap.status.skipped:
                if line not in self._skipped:
                    log.warning("skipping a damaged data file, running without it: %s", line)
            self._skipped = self._skipped.union(snap.status.skipped)
        self._last = snap
        self._greeting_line = None  # built again, from this tick, when a client connects
        for a in snap.alerts:
            self._recent[a.id] = a
            self._recent.move_to_end(a.id)
            self.sinks.put(a)
            self.notifications.submit(a)
            self.announced += 1
        while len(self._recent) > self.options.recent_alerts:
            self._recent.popitem(last=False)
        if self.server.clients:
            self.server.broadcast(self._delta(snap))
        if self.metrics is not None:
            self.metrics.observe(
                snap,
                self.server.clients,
                sink_drops=self.sinks.dropped,
                client_resyncs=self.server.resyncs,
                clients_refused=self.server.refused,
                flow_log_drops=0 if self.flow_log is None else self.flow_log[1].dropped,
                notify_drops=self.notifications.dropped,
            )
        if self.notifier.enabled:
            self.notifier.watchdog()
            self.notifier.status(
                f"{snap.counters.flows} flows, {self.announced} alerts announced, "
                f"{self.server.clients} clients"
            )

    def _delta(self, snap: Snapshot) -> bytes:
        """The tick's `delta` line, encoded once for every client."""
        line = codec.frame(self._stream.delta(snap))
        self._streamed = snap
        return line

    def _greeting(self) -> bytes | None:
        """A new client (or one that fell behind) gets the latest state with every recent
        alert, as one `state` record; the deltas that follow are the shared ones.

        Built once per tick, on the first ask, and shared by every client greeted in that
        tick: at 10,000 flows a state is ~7 MB, and connects may come in bursts. While no
        client was attached the stream skipped ticks; it catches up here first (a delta
        nobody is sent), so its process table and flows are the latest snapshot's.
        """
        last = self._last
        if self._greeting_line is None and last is not None:
            if self._streamed is not last:
                self._delta(last)
            self._greeting_line = codec.frame(self._stream.state(tuple(self._recent.values())))
        return self._greeting_line

    def _buffer_flows(self, snap: Snapshot, now: float) -> None:
        """Note each conversation's (latest flow, first seen, last seen) for the next flush.

        Rows are filed by the flow's version (`model.versions.Filed`: an unchanged flow keeps
        its version), so a tick costs what changed: only the time the tick's flows were last
        seen moves (`_seen_at`); it is written into a row when its version leaves (the row of
        a conversation that goes on is written again later) or at the flush.
        """
        filed, at = self._flow_rows, self._seen_at
        changes = filed.changes(snap.flows, snap.changes)
        for stray in self._strays:  # rows of unnumbered flows are never filed: see below
            stray.last = at
        rows, flows = self._flows, snap.flows
        made: list[_Row] = []
        strays: list[_Row] = []
        for i in changes.new:
            ef = flows[i]
            key = ef.flow.key
            if key.remote is None:
                made.append(_LISTENING)  # listening sockets are not conversations
                continue
            row = rows.get(key)
            if row is None:
                row = rows[key] = _Row(ef, ef.flow.first_seen or now)
            row.ef = ef
            made.append(row)
            if not ef.flow.serial:
                strays.append(row)
        for row in filed.file(changes, made):
            row.last = at
        self._strays, self._seen_at = strays, now

    def _stamp_rows(self) -> None:
        """Write the time the buffered flows were last seen into their rows."""
        at = self._seen_at
        for row in self._strays:
            row.last = at
        for row in self._flow_rows.answers.values():
            row.last = at  # (the _LISTENING placeholder is never saved)

    def flush_flows(self) -> None:
        """Write the buffered flow summaries and the usage rows, in one transaction."""
        self._stamp_rows()
        usage = self.usage.take()
        if self._flows or usage:
            self.store.save_flows(((r.ef, r.first, r.last) for r in self._flows.values()), usage)
            self._flows.clear()
            self._flow_rows.keep_only({})
            self._strays = []
        self._last_flush = self.clock.monotonic()

    def _do_reload(self) -> None:
        self._reload = False
        if self._build is None:
            return
        self.notifier.reloading()
        try:
            detector = self._build()
        except NetwatchError as exc:
            first = str(exc).splitlines()[0]
            log.error("reload failed, keeping the running config and rules: %s", first)
            self.notifier.reloaded("reload failed; running the previous config")
            return
        self.engine.detector = detector
        log.info("reloaded config, policy and rules")
        self.notifier.reloaded("reloaded")

    def shutdown(self) -> None:
        """Flush flows, deliver queued sink alerts, close clients and the store."""
        for helper in self._background:
            helper.stop()
        try:
            self.flush_flows()
        finally:
            if self.flow_log is not None:
                reporter, writer = self.flow_log
                deadline = self.clock.monotonic() + SHUTDOWN_WAIT
                for report in reporter.finish(self.clock.now()):
                    writer.put(report, wait=max(0.0, deadline - self.clock.monotonic()))
                writer.close(timeout=max(0.1, deadline - self.clock.monotonic()))
                if writer.dropped:
                    dropped = writer.dropped
                    log.warning("flow log: %d records dropped: its writer fell behind", dropped)
            self.sinks.close()
            self.notifications.close()
            if self.history is not None:
                self.history.close()
            self.server.close()
            self.engine.close()
            self.store.close()
