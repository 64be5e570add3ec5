"""Facts about this machine that are not flows: SoftEther configuration found on disk.

Produced by `sources.hostfacts` (read-only file checks), consumed by `detect` (VG-RELAY-5).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SoftEtherConfig:
    """One SoftEther config file (`vpn_server.config`, `vpn_client.config`) and what it says."""

    path: str
    hubs: tuple[str, ...] = ()
    """Virtual hub names declared under `VirtualHUB`."""
    listener_ports: tuple[int, ...] = ()
    """Enabled `ListenerList` ports."""
    vpngate: bool = False
    """The file declares a `VPNGATE` hub (or mentions VPNGATE at all, for client configs)."""


@dataclass(frozen=True, slots=True)
class HostFacts:
    """What the host check found; `problems` says what could not be read and why."""

    taken_at: float
    softether: tuple[SoftEtherConfig, ...] = ()
    problems: tuple[str, ...] = ()

    @property
    def vpngate_configs(self) -> tuple[SoftEtherConfig, ...]:
        """The config files that set this machine up as a VPN Gate relay."""
        return tuple(c for c in self.softether if c.vpngate)
