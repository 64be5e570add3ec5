"""Site policy as data: what is expected, what each rule's findings should do, what is trusted.

These types live in the model, not in `detect/policy.py`, because two layers build or read them:
`config` builds them while it parses the `[policy]` section (so every bad value gets its file
and line), and config sits below detect in the import layers. `detect/policy.py` holds the
behaviour (`PolicyView`: does this flow match, is it trusted, which action); alerts carry
the `Action` their rule was given.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import StrEnum

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class Action(StrEnum):
    """What to do with a rule's findings (Zeek's notice actions, reduced to three)."""

    ALERT = "alert"
    """Raise an alert the user sees."""
    LOG = "log"
    """Record the finding (store, export) and show it dimmed, below the alerts to look at."""
    IGNORE = "ignore"
    """Drop the finding."""


@dataclass(frozen=True, slots=True)
class EndpointPattern:
    """An expected VPN endpoint: a network and optionally one port (any port when None).

    Not `model.Endpoint`, which is one concrete address and port of a flow.
    """

    network: IPNetwork
    port: int | None = None


@dataclass(frozen=True, slots=True)
class ExpectedVpn:
    """One piece of VPN software the user expects; every given field must match a flow."""

    name: str = ""
    """A label for messages, e.g. `work VPN`."""
    process: tuple[str, ...] = ()
    """Process names (shell globs, case-insensitive), e.g. `openvpn`."""
    path: tuple[str, ...] = ()
    """Executable paths (shell globs), e.g. `/usr/sbin/openvpn`."""
    protocols: tuple[str, ...] = ()
    """Protocol labels as the dissectors name them: `openvpn`, `wireguard`, `ipsec`, ..."""
    endpoints: tuple[EndpointPattern, ...] = ()
    """Remote networks (`203.0.113.0/24`) or addresses with ports (`203.0.113.5:1194`)."""


@dataclass(frozen=True, slots=True)
class TunnelPolicy:
    """`[policy.tunnel]`: traffic must go through a VPN tunnel (issue 15, "Leaks").

    A flow that leaves by an interface matching none of `interfaces` (and not loopback) to an
    address outside `allowed_networks` is a leak while `required` is set.
    """

    required: bool = False
    """Whether every flow must leave through the tunnel (`vpn.leak`, `vpn.dns_leak`)."""
    interfaces: tuple[str, ...] = ("wg*", "tun*")
    """Tunnel interface names (shell globs), e.g. `wg*`, `tun*`, `ppp*`."""
    allowed_networks: tuple[IPNetwork, ...] = ()
    """Remote networks that may be reached directly, e.g. the LAN `192.168.1.0/24`."""


@dataclass(frozen=True, slots=True)
class Policy:
    """Site policy: what is expected, what each rule's findings should do, what is trusted."""

    expected_vpn: tuple[ExpectedVpn, ...] = ()
    """VPN software the user runs on purpose; its traffic is not `vpn.unexpected`."""
    rules: tuple[tuple[str, Action], ...] = ()
    """Per-rule action (`alert`, `log`, `ignore`), by rule id; unlisted rules alert."""
    trusted_networks: tuple[IPNetwork, ...] = ()
    """Remote networks whose flows no rule reports on (e.g. the company's VPN range)."""
    home_country: str | None = None
    """ISO code of where this machine is; remote addresses elsewhere count as foreign."""
    tunnel: TunnelPolicy | None = None
    """`[policy.tunnel]`, when the config has one."""

    def action_for(self, rule_id: str) -> Action:
        """Return the configured action for a rule (alert when unlisted)."""
        for rid, action in self.rules:
            if rid == rule_id:
                return action
        return Action.ALERT
