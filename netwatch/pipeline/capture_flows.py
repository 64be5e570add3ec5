"""Live packet flows for the engine: capture thread -> flow table -> flows owned by processes.

`CaptureFlows` is the engine's `PacketFlows`. Each tick it decodes what the capture thread
queued, feeds the flow table (which runs the dissectors), expires idle flows, and turns every
live flow into a `Flow` seen from this host. `flows.attribution.attribute` decides the owning
process from the socket table (trying the initiator's side first, then the responder's, each
only if that address is one of this host's); the table keeps it on the flow so it survives the
socket closing (attribution `cached`). Flows expired this tick are reported one last time so
short conversations are not missed between ticks. The table is given this host's addresses
before each batch, so a routed or translated packet is counted once and its flow marked
forwarded (`flows.table`).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from netwatch.errors import CaptureUnavailableError
from netwatch.flows.attribution import attributed_flows
from netwatch.flows.serials import SerialBook
from netwatch.flows.table import FlowState, FlowTable, Inspector
from netwatch.model import (
    Counters,
    Endpoint,
    Flow,
    FlowKey,
    IPAddress,
    ProcessRef,
    SocketTable,
    Transport,
)
from netwatch.pipeline.offline import default_inspector
from netwatch.sources.capture import AddressWatch, LiveCapture, local_addresses
from netwatch.sources.connect_owners import (
    MECHANISM_SAMPLES,
    WATCHED,
    ConnectionOwners,
    StartStats,
)
from netwatch.sources.netlink import NetlinkUnavailableError

ADDRESS_REFRESH = 1.0
"""Seconds between asking for this host's interface addresses. The flow table judges from
them whether a packet passes through this host (`FlowTable.local`), so an address that just
appeared (a tunnel coming up) must be known within a tick; the default source
(`sources.capture.AddressWatch`) reads them again only when the kernel reports a change."""


class StartOwners(Protocol):
    """Owners of connections caught as they started: `ConnectionOwners` in this process,
    or the daemon's analyzer's view of its collector's watcher (`sources.remote`)."""

    def owner(self, key: FlowKey) -> ProcessRef | None:
        """The process that opened `key`, if its start was caught."""
        ...

    def hint(self, table: SocketTable) -> None:
        """The latest socket sample."""
        ...

    def stats(self) -> StartStats:
        """Starts seen, attributed and missed so far."""
        ...

    def stop(self) -> None:
        """Stop watching."""
        ...


class CaptureFlows:
    """`PacketFlows` backed by a running `LiveCapture` and a `FlowTable`."""

    def __init__(
        self,
        capture: LiveCapture,
        *,
        inspect: Inspector | None = None,
        forget: Callable[[FlowKey], None] | None = None,
        idle_timeout: float = 120.0,
        addresses: Callable[[], frozenset[IPAddress]] | None = None,
        starts: StartOwners | None = None,
        own_pids: frozenset[int] | None = None,
    ) -> None:
        self.capture = capture
        self.own_pids = frozenset((os.getpid(),)) if own_pids is None else own_pids
        """netwatch's own processes (this one; the daemon's collector too): their packet
        sockets (capture, the start watcher) are never a flow's guessed owner."""
        self.starts = starts
        """Owners of outgoing connections caught as they started (None: not running)."""
        self.table = FlowTable(inspect, idle_timeout=idle_timeout, on_expire=forget)
        self._watch = AddressWatch() if addresses is None else None
        """This namespace's addresses, read again when the kernel reports a change."""
        self._addresses = addresses or self._watch or local_addresses
        self._addrs: frozenset[IPAddress] = frozenset()
        self._addrs_at = float("-inf")
        self._touched: set[FlowState] | None = None
        """Flows that had packets since `active` last ran (kept once it was asked)."""
        self._pumped = False
        """`active` moved the queue into the table this tick: `flows` must not take more.
        A packet queued after the engine looked its conversation's socket up would show
        its flow this tick with no owner (a new socket the sample has not seen); it waits
        for the next tick instead, when its socket is looked up first."""

    @classmethod
    def open(
        cls, interface: str | None = None, bpf: str | None = None, idle_timeout: float = 120.0
    ) -> CaptureFlows:
        """Start capturing (raises `CaptureUnavailableError`) with the dissectors attached."""
        inspect, forget = default_inspector()
        capture = LiveCapture(interface, bpf).start()
        starts = None
        # Without it, attribution falls back to the socket samples alone.
        with contextlib.suppress(CaptureUnavailableError, NetlinkUnavailableError):
            starts = ConnectionOwners().start()
        return cls(
            capture, inspect=inspect, forget=forget, idle_timeout=idle_timeout, starts=starts
        )

    def _local(self) -> frozenset[IPAddress]:
        now = time.monotonic()
        if now - self._addrs_at > ADDRESS_REFRESH:
            self._addrs, self._addrs_at = self._addresses(), now
        return self._addrs

    def pump(self) -> int:
        """Move queued packets into the flow table; returns how many."""
        self.table.local = self._local()
        ingest = self.table.ingest
        packets = self.capture.packets()
        if self._touched is not None:
            self._touched.update(map(ingest, packets))
        else:
            for meta in packets:
                ingest(meta)
        return len(packets)

    def active(self) -> list[tuple[Transport, Endpoint, Endpoint]]:
        """(transport, local, remote) of each TCP or UDP flow that had packets since the
        last call; both orientations when both ends are this host's (loopback).

        The engine re-reads just these sockets between full samples (`Engine.full_every`).
        """
        if self._touched is None:
            self._touched = set()
        self.pump()
        self._pumped = True
        local = self._local()
        out: list[tuple[Transport, Endpoint, Endpoint]] = []
        for state in self._touched:
            transport = state.key.transport
            if transport is not Transport.TCP and transport is not Transport.UDP:
                continue
            ini, resp = state.initiator, state.responder
            if ini.ip in local:
                out.append((transport, ini, resp))
            if resp.ip in local:
                out.append((transport, resp, ini))
        self._touched = set()
        return out

    def flows(
        self, table: SocketTable, now: float, serials: SerialBook | None = None
    ) -> Sequence[Flow]:
        """The live packet flows (and those that ended this tick), attributed through `table`,
        numbered by `serials` (the engine's book, shared with the socket flows)."""
        if not self._pumped:
            self.pump()
        self._pumped = False
        gone = self.table.tick(now)
        local = self._local()
        starts = self.starts
        if starts is not None:
            starts.hint(table)
        connect = self._connect_owner if starts is not None else None
        serial_of = serials.serial if serials is not None else None
        return attributed_flows(
            (*self.table.live(), *gone), table, local, connect, serial_of, self.own_pids
        )

    def _connect_owner(self, key: FlowKey) -> ProcessRef | None:
        """The owner `starts` caught for a connection it watches (TCP and UDP)."""
        if self.starts is None or key.transport not in WATCHED:
            return None
        return self.starts.owner(key)

    @property
    def starts_mechanism(self) -> str:
        """What names connections too short for a sample (`connect_owners.MECHANISM_*`)."""
        return MECHANISM_SAMPLES if self.starts is None else self.starts.stats().mechanism

    def counters(self) -> Counters:
        """Packets seen, kernel drops and queue overflows since capture started."""
        st = self.capture.stats()
        starts = self.starts.stats() if self.starts is not None else StartStats(0, 0, 0)
        return Counters(
            packets=self.table.stats().packets,
            capture_drops=st.kernel_drops,
            queue_drops=st.queue_drops,
            starts_named=starts.attributed,
            starts_missed=starts.missed,
            starts_missed_budget=starts.missed_budget,
            starts_missed_gone=starts.missed_gone,
            starts_missed_queue=starts.missed_queue,
        )

    def settle(self, timeout: float = 1.0) -> bool:
        """Wait until the packets the kernel took so far are queued (before a last tick)."""
        return self.capture.settle(timeout)

    def close(self) -> None:
        """Stop the capture threads."""
        self.capture.stop()
        if self.starts is not None:
            self.starts.stop()
        if self._watch is not None:
            self._watch.close()
