"""A snapshot is one tick of the engine: flows, alert changes and the state of the sources."""

from __future__ import annotations

from dataclasses import dataclass

from netwatch.model.alert import Alert
from netwatch.model.remote import EnrichedFlow


@dataclass(frozen=True, slots=True)
class SourceStatus:
    """What the sources could see this tick, and what is missing and why."""

    mode: str = "local"
    """`local` (in-process sampling), `daemon` (attached), `replay`, or `pcap`."""
    privileged: bool = False
    capture: bool = False
    """Packet capture is running."""
    capture_reason: str | None = None
    """Why capture is off, in words a user can act on."""
    missing: tuple[str, ...] = ()
    """One line per thing that could not be seen (other users' processes, byte counters...)."""
    geoip: str | None = None
    """The GeoIP data in use, with its build date."""
    skipped: tuple[str, ...] = ()
    """One line per damaged data file (list history, GeoIP file) that is skipped, naming the
    file and why: the daemon keeps running without it, and says so here."""


@dataclass(frozen=True, slots=True)
class Counters:
    """Sizes and losses of this tick; drops are never silent."""

    sockets: int = 0
    flows: int = 0
    packets: int = 0
    capture_drops: int = 0
    queue_drops: int = 0
    sample_ms: float = 0.0
    starts_named: int = 0
    """Outgoing connections whose process was found as they started (since capture began)."""
    starts_missed: int = 0
    """Outgoing connection starts whose process was not found then (closed at once, another
    namespace's, or past the CPU cap); the socket samples may still have named them."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the UI, the daemon socket and `--format jsonl` need from one tick.

    `alerts` holds the alerts that were raised or updated during this tick (their latest
    state); consumers keep their own index by `Alert.id`.
    """

    seq: int
    taken_at: float
    interval: float
    flows: tuple[EnrichedFlow, ...] = ()
    alerts: tuple[Alert, ...] = ()
    status: SourceStatus = SourceStatus()
    counters: Counters = Counters()
