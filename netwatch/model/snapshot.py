"""A snapshot is one tick of the engine: flows, alert changes and the state of the sources."""

from __future__ import annotations

from dataclasses import dataclass, field

from netwatch.model.alert import Alert
from netwatch.model.remote import EnrichedFlow
from netwatch.model.versions import TickChanges

STARTS_HOOKS = "cgroup socket hooks"
STARTS_EVENTS = "exec events + connection starts"
STARTS_WATCH = "connection starts"
STARTS_SAMPLES = "socket samples only"
"""What names connections too short for a socket sample (`SourceStatus.starts`), best first:
a kernel program in every TCP connect (`sources.cgroup_bpf`; DNS queries still by the start
watcher), process events (the kernel's connector) with the start watcher, the start watcher
searching /proc alone, or the 1 s socket samples alone (see `sources.connect_owners`)."""


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
    starts: str | None = None
    """What names connections too short for a socket sample (`STARTS_HOOKS`, `STARTS_EVENTS`,
    `STARTS_WATCH`, `STARTS_SAMPLES`); None where that does not apply (replay, capture files)."""


@dataclass(frozen=True, slots=True)
class NamedShare:
    """How much of the last minute's traffic has a known process: bytes moved and flows seen,
    split by whether the owner is known, guessed (`Attribution.GUESSED`) or unknown.

    An honest figure next to every name shown: a table full of names says nothing about the
    bytes nobody could attribute.
    """

    bytes_known: int = 0
    bytes_guessed: int = 0
    bytes_unknown: int = 0
    flows_known: int = 0
    flows_guessed: int = 0
    flows_unknown: int = 0

    def bytes_share(self) -> tuple[float, float, float] | None:
        """(known, guessed, unknown) as fractions of the bytes, None when nothing moved."""
        total = self.bytes_known + self.bytes_guessed + self.bytes_unknown
        if not total:
            return None
        return (self.bytes_known / total, self.bytes_guessed / total, self.bytes_unknown / total)

    def flows_share(self) -> tuple[float, float, float] | None:
        """(known, guessed, unknown) as fractions of the flows, None when there were none."""
        total = self.flows_known + self.flows_guessed + self.flows_unknown
        if not total:
            return None
        return (self.flows_known / total, self.flows_guessed / total, self.flows_unknown / total)


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
    starts_missed_budget: int = 0
    """Of `starts_missed`: refused by their conversation's fair share or the CPU budget."""
    starts_missed_gone: int = 0
    """Of `starts_missed`: the socket or its process was gone when looked up."""
    starts_missed_queue: int = 0
    """Of `starts_missed`: dropped unread (over the CPU cap, or by the kernel)."""
    share: NamedShare = NamedShare()
    """The last minute's bytes and flows by whether their process is known."""


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
    changes: TickChanges | None = field(default=None, compare=False, repr=False)
    """What changed in `flows` since the engine's tick before (`model.versions`), so the
    stages after it work only on that; None when nobody worked it out (a snapshot read from
    a file or the wire). Local to the process: never encoded."""
