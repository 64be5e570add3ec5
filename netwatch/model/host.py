"""Facts about this machine that are not flows: SoftEther configuration found on disk.

Produced by `sources.hostfacts` (read-only file checks), consumed by `detect` (VG-RELAY-5).
"""

from __future__ import annotations

from dataclasses import dataclass

from netwatch.model.alert import Severity


@dataclass(frozen=True, slots=True)
class SoftEtherAccount:
    """A SoftEther client's VPN connection setting (`AccountDatabase` in `vpn_client.config`)."""

    name: str
    hostname: str = ""
    port: int | None = None
    hub: str = ""
    startup: bool = False
    """`StartupAccount`: the client connects it when the service starts."""
    retries: int = 0
    """`NumRetry`: how often it reconnects after a drop (4294967295 means for ever)."""


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
    accounts: tuple[SoftEtherAccount, ...] = ()
    """Client connection settings (`vpn_client.config`)."""
    damage: str = ""
    """Why the file does not read as a SoftEther config (`line 7: '}' closes no block`), or ''."""


@dataclass(frozen=True, slots=True)
class DefaultRoute:
    """Where traffic to the internet leaves for one address family (the kernel's route
    lookup of a public address; nothing is sent)."""

    family: str
    """`ipv4` or `ipv6`."""
    interface: str | None
    """The output interface, None when the family has no route (it cannot leak either)."""


@dataclass(frozen=True, slots=True)
class HostFacts:
    """What the host check found; `problems` says what could not be read and why."""

    taken_at: float
    softether: tuple[SoftEtherConfig, ...] = ()
    problems: tuple[str, ...] = ()
    interfaces: tuple[str, ...] = ()
    """The network interfaces that exist now (a tunnel's among them while it is up)."""
    routes: tuple[DefaultRoute, ...] = ()
    """The default route of each family; empty when routes were not looked at."""

    @property
    def vpngate_configs(self) -> tuple[SoftEtherConfig, ...]:
        """The config files that set this machine up as a VPN Gate relay."""
        return tuple(c for c in self.softether if c.vpngate)


@dataclass(frozen=True, slots=True)
class InstalledVpn:
    """A VPN or anonymizer package installed on this machine, and its programs that run now."""

    package: str
    version: str
    running: tuple[str, ...] = ()
    """`name (pid N)` of each running process of the package's programs."""


@dataclass(frozen=True, slots=True)
class Listener:
    """A socket waiting for others to connect (TCP LISTEN) or to send (unconnected UDP)."""

    transport: str
    """`tcp` or `udp`."""
    address: str
    port: int
    process: str = ""
    """The owning program's name, '' when it could not be seen (another user's, without root)."""
    pid: int | None = None


@dataclass(frozen=True, slots=True)
class CheckFacts:
    """Everything `netwatch check` looked at, gathered by `sources.vpncheck`; judged in `detect`."""

    host: HostFacts
    packages: tuple[InstalledVpn, ...] = ()
    listeners: tuple[Listener, ...] = ()
    problems: tuple[str, ...] = ()
    """What could not be looked at (no dpkg, no permission to see sockets), one line each."""
    countries: tuple[tuple[str, str], ...] = ()
    """(server address, country) of SoftEther connection settings whose server is an address
    that the GeoIP data places; host names are not resolved (the check sends nothing)."""


@dataclass(frozen=True, slots=True)
class Finding:
    """One answer of `netwatch check`: what was found, how much it matters, what to do."""

    id: str
    """Kind and subject, e.g. `softether.vpngate_relay:/var/lib/softether/vpn_server.config`."""
    severity: Severity
    title: str
    evidence: tuple[str, ...] = ()
    advice: str = ""
