"""Prometheus metrics for the daemon, served on localhost by `prometheus_client`.

Label cardinality is bounded: process and country labels keep the first `MAX_LABELS` values
seen and fold the rest into `other`; rule ids come from the bundled pack (tens), severities,
directions and scopes are fixed sets; `file` names one of the few data files netwatch reads.
Byte counters grow by each flow's increase since the previous tick (counters reset with the
flow; a restarted flow counts from zero).

Running totals are counters, named `..._total` as Prometheus's naming conventions ask
(https://prometheus.io/docs/practices/naming/), never gauges: a gauge of a running total
breaks `rate()` across a restart. The engine, the sink worker and the socket server keep
them as plain totals since they started; `_Totals` turns each new total into the counter's
increase (a total that went down belongs to a restarted source: it counts from zero).

Bytes carry the remote's `scope` (`global`, `private`, `loopback`, `link_local`, ... as
`model.Scope`, `unknown` without enrichment) and a `country` only where one can exist:
the ISO code of a global address, `unknown` for a global address the GeoIP data does not
place, and empty (the label absent, in Prometheus's reading) for every other scope, so
loopback and LAN traffic is no longer counted as `country="unknown"`.
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from netwatch.model import Alert, FlowKey, RemoteInfo, Scope, Snapshot
from netwatch.model.versions import UNNUMBERED, Version, versions

MAX_LABELS = 50
OTHER = "other"


class _Bounded:
    """Keeps at most `limit` distinct label values; later ones become `other`."""

    def __init__(self, limit: int = MAX_LABELS) -> None:
        self._limit = limit
        self._seen: set[str] = set()

    def __call__(self, value: str | None) -> str:
        v = value or "unknown"
        if v in self._seen:
            return v
        if len(self._seen) >= self._limit:
            return OTHER
        self._seen.add(v)
        return v


class _Totals:
    """Feeds running totals into counters: each call adds what the total grew by."""

    def __init__(self) -> None:
        self._last: dict[str, int] = {}

    def advance(self, counter: Counter, key: str, total: int) -> None:
        """Add `total`'s growth since the last call (all of it after a source restart)."""
        last = self._last.get(key, 0)
        grown = total - last if total >= last else total
        self._last[key] = total
        if grown > 0:
            counter.inc(grown)


class Metrics:
    """The daemon's metrics in their own registry (so tests can read them without HTTP)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.alerts = Counter(
            "netwatch_alerts", "Alerts raised or updated", ["rule", "severity"], registry=r
        )
        self.flows = Gauge("netwatch_flows", "Flows in the latest snapshot", registry=r)
        self.sockets = Gauge("netwatch_sockets", "Sockets in the latest sample", registry=r)
        self.bytes = Counter(
            "netwatch_bytes",
            "Bytes moved, by direction, process, remote scope and remote country",
            ["direction", "process", "scope", "country"],
            registry=r,
        )
        # Running totals: counters (exposed with `_total`), fed by `_Totals`.
        self.capture_drops = Counter(
            "netwatch_capture_drops", "Packets the kernel dropped before capture", registry=r
        )
        self.queue_drops = Counter(
            "netwatch_queue_drops", "Packets dropped because the capture queue was full", registry=r
        )
        self.starts_named = Counter(
            "netwatch_connection_starts_named",
            "Outgoing connections whose process was found as they started",
            registry=r,
        )
        self.starts_missed = Counter(
            "netwatch_connection_starts_missed",
            "Outgoing connection starts whose process was not found then",
            registry=r,
        )
        self.sample_seconds = Histogram(
            "netwatch_sample_duration_seconds",
            "Time one engine tick took",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=r,
        )
        self.clients = Gauge("netwatch_socket_clients", "Connected socket clients", registry=r)
        self.sink_drops = Counter(
            "netwatch_sink_drops", "Alerts the live sinks' queue could not take", registry=r
        )
        self.client_resyncs = Counter(
            "netwatch_client_resyncs",
            "Times a socket client that fell behind was sent a fresh state instead",
            registry=r,
        )
        self.clients_refused = Counter(
            "netwatch_socket_clients_refused",
            "Connections to the daemon's socket refused (too many clients, or a peer's rate)",
            registry=r,
        )
        self.flow_log_drops = Counter(
            "netwatch_flow_log_drops",
            "Flow records the flow log's queue could not take",
            registry=r,
        )
        self.notify_drops = Counter(
            "netwatch_notify_drops",
            "Notifications a channel's queue could not take (a receiver too slow or dead)",
            registry=r,
        )
        self.skipped = Gauge(
            "netwatch_data_file_skipped",
            "1 for each damaged data file (list history, GeoIP file) the daemon runs without",
            ["file"],
            registry=r,
        )
        self._skipped: tuple[str, ...] = ()
        self._totals = _Totals()
        self._process = _Bounded()
        self._country = _Bounded()
        self._last: dict[FlowKey, tuple[int, int]] = {}
        self._versions: list[Version] | None = None
        """Last snapshot's flow versions: equal versions, equal counters (no byte moved)."""

    def observe(
        self,
        snap: Snapshot,
        clients: int = 0,
        *,
        sink_drops: int = 0,
        client_resyncs: int = 0,
        clients_refused: int = 0,
        flow_log_drops: int = 0,
        notify_drops: int = 0,
    ) -> None:
        """Update every metric from one snapshot, and the daemon's own running totals
        (`SinkWorker.dropped` of the alert sinks and of the flow log,
        `SnapshotServer.resyncs` and `.refused`, `Notifications.dropped`)."""
        self._count_alerts(snap.alerts)
        c = snap.counters
        self.flows.set(c.flows)
        self.sockets.set(c.sockets)
        advance = self._totals.advance
        advance(self.capture_drops, "capture_drops", c.capture_drops)
        advance(self.queue_drops, "queue_drops", c.queue_drops)
        advance(self.starts_named, "starts_named", c.starts_named)
        advance(self.starts_missed, "starts_missed", c.starts_missed)
        advance(self.sink_drops, "sink_drops", sink_drops)
        advance(self.client_resyncs, "client_resyncs", client_resyncs)
        advance(self.clients_refused, "clients_refused", clients_refused)
        advance(self.flow_log_drops, "flow_log_drops", flow_log_drops)
        advance(self.notify_drops, "notify_drops", notify_drops)
        self.sample_seconds.observe(c.sample_ms / 1000.0)
        self.clients.set(clients)
        self._note_skipped(snap.status.skipped)
        tick = versions(snap.flows)
        if tick == self._versions:
            return  # last tick's versions: no byte moved
        self._versions = None if UNNUMBERED in tick else tick
        current: dict[FlowKey, tuple[int, int]] = {}
        for ef in snap.flows:
            f = ef.flow
            sent, received = f.bytes_sent or 0, f.bytes_received or 0
            current[f.key] = (sent, received)
            prev_sent, prev_received = self._last.get(f.key, (0, 0))
            d_sent = sent - prev_sent if sent >= prev_sent else sent
            d_received = received - prev_received if received >= prev_received else received
            if not (d_sent or d_received):
                continue
            proc = self._process(f.process.name if f.process else None)
            scope, country = self._where(ef.remote)
            if d_sent:
                self.bytes.labels("sent", proc, scope, country).inc(d_sent)
            if d_received:
                self.bytes.labels("received", proc, scope, country).inc(d_received)
        self._last = current

    def _where(self, remote: RemoteInfo | None) -> tuple[str, str]:
        """The `scope` and `country` labels of a flow's remote side (see the module doc)."""
        if remote is None:
            return "unknown", ""
        if remote.scope is not Scope.GLOBAL:
            return remote.scope.value, ""
        return Scope.GLOBAL.value, self._country(remote.country)

    def _note_skipped(self, skipped: tuple[str, ...]) -> None:
        """One series per skipped file, labelled with the file (the part before `: `)."""
        if skipped == self._skipped:
            return
        self._skipped = skipped
        self.skipped.clear()
        for line in skipped:
            self.skipped.labels(line.partition(": ")[0]).set(1)

    def _count_alerts(self, alerts: Sequence[Alert]) -> None:
        for a in alerts:
            self.alerts.labels(a.rule_id, a.severity.value).inc()

    def serve(self, port: int, addr: str = "127.0.0.1") -> None:
        """Serve `/metrics` on `addr:port` from a background thread."""
        start_http_server(port, addr=addr, registry=self.registry)
