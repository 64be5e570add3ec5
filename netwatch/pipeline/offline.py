"""Offline analysis: packets (a capture file) -> flow table + dissectors -> enrich -> detect.

This is what `netwatch analyze` runs. It streams: flows leave the table when they go idle
(in capture time) and are enriched, evaluated and handed to the caller at once, so memory
is bounded by the flows live at any moment, not by the file. Alerts come last, once per
alert id in its final state, because a rule may update an alert with every later flow.

A capture has no socket table, so which side is local is judged from the addresses alone
(`flows.attribution.orient`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from netwatch.dissect import Dissector
from netwatch.flows.attribution import orient
from netwatch.flows.serials import fresh_rev
from netwatch.flows.table import FlowState, FlowTable, Inspector
from netwatch.model import Alert, EnrichedFlow, FlowKey, PacketMeta
from netwatch.pipeline.engine import Detector, Enricher
from netwatch.sources.pcapfile import CaptureFile, PcapError

TICK_SECONDS = 1.0
"""How often, in capture time, idle flows are expired and emitted."""


def default_inspector() -> tuple[Inspector, Callable[[FlowKey], None]]:
    """A new dissector's `inspect` and its per-flow `forget` (one dissector per flow table)."""
    dissector = Dissector()
    return dissector.inspect, dissector.forget


@dataclass
class AnalysisStats:
    """What one run saw: packets, flows and alerts; frames the reader could not use."""

    packets: int = 0
    flows: int = 0
    alerts: int = 0
    frames: int = 0
    skipped: int = 0
    dissect_errors: int = 0
    cut_short: str | None = None
    """Why the file ended early (inside a record), when it did: what was there was read."""
    extra: dict[str, int] = field(default_factory=dict)


class OfflineAnalysis:
    """One pass of packets through table, dissectors, enricher and detector."""

    def __init__(
        self,
        *,
        inspect: Inspector | None = None,
        forget: Callable[[FlowKey], None] | None = None,
        enricher: Enricher | None = None,
        detector: Detector | None = None,
        idle_timeout: float = 120.0,
        max_flows: int = 200_000,
    ) -> None:
        self.table = FlowTable(
            inspect, idle_timeout=idle_timeout, max_flows=max_flows, on_expire=forget
        )
        self.enricher = enricher
        self.detector = detector
        self.stats = AnalysisStats()
        self._alerts: dict[str, Alert] = {}

    def flows(self, packets: Iterable[PacketMeta]) -> Iterator[EnrichedFlow]:
        """Feed every packet; yield each flow once it has finished (idle, closed, or EOF)."""
        table = self.table
        ingest = table.ingest
        next_tick: float | None = None
        count = 0
        for pkt in packets:
            count += 1
            ingest(pkt)
            ts = pkt.ts
            if next_tick is None:
                next_tick = ts + TICK_SECONDS
            elif ts >= next_tick:
                next_tick = ts + TICK_SECONDS
                yield from self._finish(table.tick(ts), ts)
        self.stats.packets += count
        last = next_tick - TICK_SECONDS if next_tick is not None else 0.0
        yield from self._finish(table.drain(), last)
        self.stats.dissect_errors = table.stats().dissect_errors

    def _finish(self, states: list[FlowState], now: float) -> Iterator[EnrichedFlow]:
        if not states:
            return
        states.sort(key=lambda s: s.first_seen)
        enricher = self.enricher
        batch: list[EnrichedFlow] = []
        for s in states:
            flow = orient(s)  # numbered: a serial of its own, fresh revisions
            remote = enricher.enrich(flow).remote if enricher is not None else None
            batch.append(EnrichedFlow(flow, remote, fresh_rev()))
        self.stats.flows += len(batch)
        if self.detector is not None:
            for alert in self.detector.evaluate(batch, now):
                self._alerts[alert.id] = alert
        yield from batch

    def alerts(self) -> list[Alert]:
        """Every alert raised during the run, in its final state, oldest first."""
        out = sorted(self._alerts.values(), key=lambda a: (a.first_seen, a.id))
        self.stats.alerts = len(out)
        return out


def analyze_file(
    path: str | Path,
    *,
    enricher: Enricher | None = None,
    detector: Detector | None = None,
    inspect: Inspector | None = None,
    forget: Callable[[FlowKey], None] | None = None,
    use_dissectors: bool = True,
    stats: AnalysisStats | None = None,
) -> Iterator[EnrichedFlow | Alert]:
    """Stream a capture file's flows, then its alerts. Raises `PcapError` on a bad file.

    The file is opened (and its header checked) before this returns, so a missing or foreign
    file fails here. Corruption later in the file ends the packets where it is met: the flows
    and alerts from what was read are still produced, then the `PcapError` is raised. A file
    that merely ends inside a record is not an error: its flows and alerts come as usual and
    `stats.cut_short` says so (the caller warns).
    """
    capture = CaptureFile(path)
    if inspect is None and use_dissectors:
        inspect, forget = default_inspector()
    run = OfflineAnalysis(inspect=inspect, forget=forget, enricher=enricher, detector=detector)
    if stats is not None:
        run.stats = stats
    return _stream(capture, run)


def _stream(capture: CaptureFile, run: OfflineAnalysis) -> Iterator[EnrichedFlow | Alert]:
    errors: list[PcapError] = []
    with capture:
        yield from run.flows(_until_error(capture, errors))
        run.stats.frames, run.stats.skipped = capture.frames, capture.skipped
        if capture.cut_short is not None:
            run.stats.cut_short = str(capture.cut_short)
    yield from run.alerts()
    if errors:
        raise errors[0]


def _until_error(capture: CaptureFile, errors: list[PcapError]) -> Iterator[PacketMeta]:
    """The file's packets; a corrupt record ends them (kept in `errors`) like end of file.

    Everything read before the damage is still analysed and reported, as tshark does, and
    the caller raises the error afterwards.
    """
    try:
        yield from capture
    except PcapError as exc:
        errors.append(exc)
