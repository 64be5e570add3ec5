"""The live engine: sources -> flows -> enrich -> detect, one Snapshot per tick.

`Engine.tick()` samples the socket table, merges in packet-observed flows when capture runs,
enriches every remote address, runs the rules, and returns a frozen `Snapshot`. Each stage
enters through a small protocol below, so the engine is tested with real stages on recorded
inputs and the daemon, `snapshot` and the dashboard's `LiveFeed` share one engine.
"""

from __future__ import annotations

import operator
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from typing import Protocol, cast, runtime_checkable

from netwatch.clock import Clock
from netwatch.flows.merge import MergeMemo, merge_flows
from netwatch.flows.serials import SerialBook
from netwatch.flows.share import ShareWindow
from netwatch.flows.socket_flows import Egress, SocketFlows
from netwatch.model import (
    Alert,
    Counters,
    Endpoint,
    EnrichedFlow,
    Flow,
    HostFacts,
    Snapshot,
    SocketTable,
    SourceStatus,
    Transport,
)
from netwatch.model.snapshot import STARTS_SAMPLES
from netwatch.model.versions import ChangeTracker, TickChanges


class SocketSource(Protocol):
    """Samples every inet socket with its owning process (`sources.sockets`)."""

    def sample(self) -> SocketTable:
        """Return the current socket table."""
        ...

    def status(self) -> SourceStatus:
        """Say what this source can and cannot see (privileges)."""
        ...


@runtime_checkable
class RefreshingSource(SocketSource, Protocol):
    """A socket source that can re-read just some sockets (`SocketSampler.refresh`)."""

    def refresh(self, active: Iterable[tuple[Transport, Endpoint, Endpoint]]) -> SocketTable:
        """Return the last table with the sockets of these (transport, local, remote) read
        again (and those not listed yet looked up)."""
        ...


class PacketFlows(Protocol):
    """Flows observed on the wire since capture started (`sources.capture` + `flows.table`)."""

    def flows(self, table: SocketTable, now: float, serials: SerialBook) -> Sequence[Flow]:
        """Return the live packet flows, attributed to processes through `table` and
        numbered by `serials` (the book the socket flows use: twins share a serial)."""
        ...

    def counters(self) -> Counters:
        """Return packet, drop and queue-overflow counts so far."""
        ...

    def close(self) -> None:
        """Stop capturing (its threads and packet sockets)."""
        ...

    def active(self) -> Sequence[tuple[Transport, Endpoint, Endpoint]]:
        """(transport, local, remote) of the TCP and UDP conversations that had packets
        since the last call."""
        ...


@runtime_checkable
class WatchesStarts(Protocol):
    """Packet flows that say what names connections too short for a sample."""

    @property
    def starts_mechanism(self) -> str:
        """`exec events + connection starts`, `connection starts` or `socket samples only`."""
        ...


class Enricher(Protocol):
    """Adds what is known about the remote side (`enrich.enricher`)."""

    def enrich(self, flow: Flow) -> EnrichedFlow:
        """Return the flow with its `RemoteInfo`."""
        ...

    def describe(self) -> str:
        """One line naming the data in use (GeoIP files and their dates) for the status bar."""
        ...

    def skipped(self) -> tuple[str, ...]:
        """One line per damaged data file that is skipped (for the status and metrics)."""
        ...

    def close(self) -> None:
        """Stop background lookups and close the data files."""
        ...

    @property
    def stable(self) -> bool:
        """Whether a flow always gets an equal answer, so last tick's answer may be reused."""
        ...


class Detector(Protocol):
    """Runs the rules (`detect.engine`)."""

    def evaluate(
        self,
        flows: Sequence[EnrichedFlow],
        now: float,
        host: HostFacts | None = None,
        changes: TickChanges | None = None,
    ) -> Sequence[Alert]:
        """Return the alerts raised or updated by this tick's flows (and the host facts);
        `changes`: how the flows differ from the tick before (`model.versions`)."""
        ...


class HostFactsSource(Protocol):
    """Facts about this machine that are not flows (`sources.hostfacts`: SoftEther configs)."""

    def facts(self, now: float, exes: Iterable[str] = ()) -> HostFacts:
        """Return the host facts; `exes` are the executables of this tick's processes."""
        ...


_PROCESS = operator.attrgetter("flow.process")
_EXE = operator.attrgetter("exe")

REREAD_COST = 5
"""An exact sock_diag request costs about as much as this many sockets of a full sample."""
FULL_FIXED_COST = 200
"""A full sample of an empty table (hash-table walks, /proc/net reads: ~0.3 ms) costs about
as much as this many sockets of one. Beyond that many re-reads, a full sample is cheaper."""


class Engine:
    """One tick: sample, merge, enrich, detect; returns an immutable `Snapshot`."""

    def __init__(
        self,
        sockets: SocketSource,
        clock: Clock,
        *,
        packets: PacketFlows | None = None,
        enricher: Enricher | None = None,
        detector: Detector | None = None,
        status: SourceStatus | None = None,
        host: HostFactsSource | None = None,
        full_every: float = 0.0,
        egress: Egress | None = None,
    ) -> None:
        self.sockets = sockets
        self.full_every = full_every
        """Seconds between full socket samples while capture runs (0: every tick).

        In between, only the sockets capture saw packets on are read again (counters and
        state of a TCP socket change only with its packets), and sockets of conversations
        the table lacks are looked up. New listening sockets, and sockets that sent
        nothing, show at the next full sample. A tick after capture lost packets, or with
        many active sockets, samples in full."""
        self._full_at = float("-inf")
        self._drops = 0
        self._table_size = 0
        self.host = host
        self.clock = clock
        self.packets = packets
        self.enricher = enricher
        self.detector = detector
        self._status = status
        self._seq = 0
        self._last_tick: float | None = None
        self.serials = SerialBook()
        """Serials of the conversations in the last snapshot (socket and packet views)."""
        self._socket_flows = SocketFlows(self.serials, egress if packets is None else None)
        """`egress`: where socket flows leave when capture is off (capture knows it better:
        the interface a flow's first packet was seen on)."""
        self._enriched_by: Enricher | None = None
        self._exes_of: frozenset[str] | None = None
        self._share = ShareWindow()
        """The last minute's bytes and flows by whether their process is known."""
        self._changes = ChangeTracker()
        """Works out once per tick what changed, for every stage after the flows."""
        self._merged: MergeMemo = {}
        """Last tick's merges of packet flows with their socket twins (`merge_flows`)."""

    def tick(self) -> Snapshot:
        """Run one sample through the pipeline."""
        started = self.clock.monotonic()
        now = self.clock.now()
        table = self._sample(started)
        flows: Sequence[Flow] = self._socket_flows.flows(table, now)
        counters = Counters()
        if self.packets is not None:
            memo: MergeMemo = {}
            packet_flows = self.packets.flows(table, now, self.serials)
            nat = table.translated if table.nat else None  # containers behind NAT
            flows = merge_flows(flows, packet_flows, self._merged, memo, nat, one_book=True)
            self._merged = memo
            counters = self.packets.counters()
            drops = counters.capture_drops + counters.queue_drops
            if drops != self._drops:  # packets were lost: so may be activity to re-read
                self._drops, self._full_at = drops, float("-inf")
        if self.enricher is not self._enriched_by:  # swapped: last tick's answers are not its
            self._socket_flows.forget_enrichment()
            self._enriched_by = self.enricher
        enrich = self.enricher.enrich if self.enricher is not None else None
        stable = self.enricher is not None and self.enricher.stable
        self.serials.retain(flows)
        enriched = self._socket_flows.enrich(flows, enrich, stable)
        changes = self._changes.step(enriched)
        alerts: tuple[Alert, ...] = ()
        if self.detector is not None:
            host = None
            if self.host is not None:
                host = self.host.facts(now, self._exes(enriched))
            alerts = tuple(self.detector.evaluate(enriched, now, host, changes))
        self._seq += 1
        interval = 0.0 if self._last_tick is None else started - self._last_tick
        self._last_tick = started
        sample_ms = (self.clock.monotonic() - started) * 1000.0
        return Snapshot(
            seq=self._seq,
            taken_at=now,
            interval=interval,
            flows=enriched,
            alerts=alerts,
            status=self._status or self._live_status(),
            counters=replace(
                counters,
                sockets=len(table.entries),
                flows=len(enriched),
                sample_ms=sample_ms,
                share=self._share.observe(enriched, started, changes),
            ),
            changes=changes,
        )

    def _exes(self, flows: tuple[EnrichedFlow, ...]) -> frozenset[str]:
        """The executables behind this tick's flows (for the host facts), kept while every
        flow has last tick's revisions (`SocketFlows.unchanged`)."""
        if self._exes_of is None or not self._socket_flows.unchanged:
            exes = set(map(_EXE, filter(None, map(_PROCESS, flows))))  # in C
            exes.discard(None)
            exes.discard("")
            self._exes_of = frozenset(cast(set[str], exes))
        return self._exes_of

    def _sample(self, started: float) -> SocketTable:
        """A full socket sample, or (see `full_every`) a refresh of the active sockets."""
        source, packets = self.sockets, self.packets
        if (
            packets is not None
            and self.full_every > 0
            and started - self._full_at < self.full_every
            and isinstance(source, RefreshingSource)
        ):
            active = packets.active()
            if len(active) * REREAD_COST < self._table_size + FULL_FIXED_COST:
                return source.refresh(active)
        elif packets is not None and self.full_every > 0:
            packets.active()  # a full sample reads them all: start counting afresh
        self._full_at = started
        table = source.sample()
        self._table_size = len(table.entries)
        return table

    def _live_status(self) -> SourceStatus:
        """The sampler's view of privileges, plus whether capture runs and the GeoIP data."""
        status = self.sockets.status()
        if self.packets is not None:
            packets = self.packets
            starts = packets.starts_mechanism if isinstance(packets, WatchesStarts) else None
            status = replace(status, capture=True, capture_reason=None, starts=starts)
        else:
            status = replace(status, starts=STARTS_SAMPLES)
            if status.capture_reason is None:
                status = replace(status, capture_reason="packet capture is off")
        if self.enricher is not None and status.geoip is None:
            status = replace(status, geoip=self.enricher.describe())
        if self.enricher is not None and (skipped := self.enricher.skipped()):
            status = replace(status, skipped=skipped)
        return status

    def close(self) -> None:
        """Release what the engine holds: capture threads, GeoIP files, RDAP lookups.

        The daemon calls it once when its loop ends (`Ticker.close`); the socket source is
        the caller's, which made it.
        """
        if self.packets is not None:
            self.packets.close()
        if self.enricher is not None:
            self.enricher.close()


class LiveFeed:
    """Ticks an engine every `interval` seconds in the caller's thread (the UI's worker)."""

    status: str | None = None
    """The engine runs in this process: nothing to lose (`SnapshotFeed.status`)."""

    def __init__(self, engine: Engine, interval: float = 1.0, ticks: int | None = None) -> None:
        self._engine = engine
        self._interval = interval
        self._ticks = ticks
        self._closed = threading.Event()

    def snapshots(self) -> Iterator[Snapshot]:
        """Yield one snapshot per interval until closed or `ticks` are done."""
        done = 0
        while not self._closed.is_set():
            yield self._engine.tick()
            done += 1
            if self._ticks is not None and done >= self._ticks:
                return
            if self._closed.wait(self._interval):
                return

    def close(self) -> None:
        """Stop after the current tick."""
        self._closed.set()
