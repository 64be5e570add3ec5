"""The one place that composes a live engine: `build_live_engine(...)`.

`snapshot`, `record`, the dashboard's live feed and the daemon all call this, so a stage
added here (enrichment, capture, detection) reaches every command at once. Every part is a
keyword argument: callers pass what they built (an enricher from `--geoip-db`, a detector
from the rules) and tests pass a fake clock; whatever is left out is simply not run.
"""

from __future__ import annotations

from netwatch.clock import Clock, SystemClock
from netwatch.pipeline.engine import (
    Detector,
    Engine,
    Enricher,
    HostFactsSource,
    PacketFlows,
    SocketSource,
)
from netwatch.sources.hostfacts import HostFactsReader
from netwatch.sources.routes import RouteLookup
from netwatch.sources.sockets import SocketSampler


def build_live_engine(
    *,
    clock: Clock | None = None,
    sockets: SocketSource | None = None,
    socket_backend: str = "auto",
    packets: PacketFlows | None = None,
    enricher: Enricher | None = None,
    detector: Detector | None = None,
    host: HostFactsSource | None = None,
    full_every: float = 0.0,
    containers: bool = True,
) -> Engine:
    """Compose the live engine from the socket sampler and whatever stages are given.

    With a detector, the host facts (SoftEther configs on disk, read-only, reread each
    minute) come from `sources.hostfacts` unless `host` is given. `full_every`: see
    `Engine.full_every` (the daemon's `--full-sample-every`). `containers`: list other
    network namespaces' sockets too (`--no-containers` says no).
    """
    clock = clock or SystemClock()
    source = sockets or SocketSampler(backend=socket_backend, clock=clock, namespaces=containers)
    if host is None and detector is not None:
        host = HostFactsReader()
    # Without capture, leak rules still learn where traffic leaves: the kernel's route
    # lookup (no privilege needed; cached per address).
    egress = RouteLookup().egress if packets is None and detector is not None else None
    return Engine(
        source,
        clock,
        packets=packets,
        enricher=enricher,
        detector=detector,
        host=host,
        full_every=full_every,
        egress=egress,
    )
