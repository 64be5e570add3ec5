"""Policy: what the user expects (VPN software), what each rule should do, what is trusted.

Detection says what happened; policy says what to do about it (Zeek's `Notice::policy`).
`PolicyView` answers per flow from the config's `[policy]` section: whether a flow belongs to
expected VPN software, whether its remote side is trusted or foreign, and which action a
rule's findings get. The policy's data types (`Policy`, `ExpectedVpn`, `EndpointPattern`,
`Action`) are in `model/policy.py`, since `config` builds them while it parses. An unknown
value never proves a match: an entry matches a flow when every field it names agrees with
what is known, and at least one of them is known.

`outside_tunnel` answers `[policy.tunnel]` (issue 15, "Leaks"): a flow that left by an
interface that is not a tunnel's while the policy requires the tunnel, or while it is up (this
tick's flows use a tunnel interface, or a tunnel interface exists: `tunnel_present`). Whether
its remote side is worth reporting (global address, DNS port) is the rules' business
(`rules/vpn.toml`); `tunnel_ipv6` says whether the tunnel carries IPv6 at all, which separates
`vpn.ipv6_leak` from `vpn.leak`.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable

from netwatch.model import Action, EnrichedFlow, ExpectedVpn, HostFacts, Policy


def glob_any(value: str, patterns: tuple[str, ...]) -> bool:
    """Whether `value` matches one of the shell globs (case-sensitive: interface names)."""
    return any(fnmatch.fnmatchcase(value, p) for p in patterns)


def entry_matches(entry: ExpectedVpn, ef: EnrichedFlow) -> bool:
    """Whether one expected-VPN entry covers this flow (see the module docstring)."""
    f = ef.flow
    known = 0
    if entry.process and f.process is not None:
        if not glob_any(f.process.name.lower(), entry.process):
            return False
        known += 1
    if entry.path:
        exe = f.process.exe if f.process is not None else None
        if exe is not None:
            if not glob_any(exe, entry.path):
                return False
            known += 1
    if entry.protocols and f.label is not None:
        if f.label.name.lower() not in entry.protocols:
            return False
        known += 1
    if entry.endpoints and f.key.remote is not None:
        remote = f.key.remote
        hit = any(
            e.network.version == remote.ip.version
            and remote.ip in e.network
            and (e.port is None or e.port == remote.port)
            for e in entry.endpoints
        )
        if not hit:
            return False
        known += 1
    return known > 0


class PolicyView:
    """The policy as the detector asks it, per flow and per rule."""

    def __init__(self, policy: Policy | None = None) -> None:
        self.policy = policy or Policy()

    def expected(self, ef: EnrichedFlow) -> bool:
        """Whether the flow belongs to VPN software the user expects."""
        return any(entry_matches(e, ef) for e in self.policy.expected_vpn)

    def expected_by(self, ef: EnrichedFlow) -> ExpectedVpn | None:
        """The first entry that expects this flow, for evidence."""
        for e in self.policy.expected_vpn:
            if entry_matches(e, ef):
                return e
        return None

    def trusted(self, ef: EnrichedFlow) -> bool:
        """Whether the remote address is in a trusted network."""
        remote = ef.flow.key.remote
        if remote is None:
            return False
        ip = remote.ip
        return any(n.version == ip.version and ip in n for n in self.policy.trusted_networks)

    def tunnel_up(self, flows: Iterable[EnrichedFlow]) -> bool:
        """Whether any flow was captured on a `[policy.tunnel]` interface (the tunnel is up)."""
        tunnel = self.policy.tunnel
        if tunnel is None:
            return False
        globs = tunnel.interfaces
        return any(
            ef.flow.interface is not None and glob_any(ef.flow.interface, globs) for ef in flows
        )

    def tunnel_interfaces(self) -> tuple[str, ...] | None:
        """`[policy.tunnel]`'s interface globs; None without a tunnel policy."""
        tunnel = self.policy.tunnel
        return None if tunnel is None else tunnel.interfaces

    def tunnel_present(self, host: HostFacts | None) -> bool:
        """Whether an interface matching `[policy.tunnel]`'s globs exists (host facts)."""
        tunnel = self.policy.tunnel
        if tunnel is None or host is None:
            return False
        return any(glob_any(i, tunnel.interfaces) for i in host.interfaces)

    def tunnel_ipv6(self, host: HostFacts | None) -> bool:
        """Whether the tunnel carries IPv6: the IPv6 default route leaves by a tunnel
        interface. Unknown routes (no host facts) count as not carrying it."""
        tunnel = self.policy.tunnel
        if tunnel is None or host is None:
            return False
        return any(
            r.family == "ipv6"
            and r.interface is not None
            and glob_any(r.interface, tunnel.interfaces)
            for r in host.routes
        )

    def outside_tunnel(self, ef: EnrichedFlow, tunnel_up: bool = False) -> bool:
        """Whether the flow left outside the tunnel while `[policy.tunnel]` requires it or
        the tunnel is up (`tunnel_up`: this tick's flows use a tunnel interface).

        Only flows whose interface is known count (an unknown interface proves nothing), and
        never loopback (`lo`) or a remote address in `allowed_networks` (the LAN may go direct).
        """
        tunnel = self.policy.tunnel
        f = ef.flow
        iface, remote = f.interface, f.key.remote
        if tunnel is None or not (tunnel.required or tunnel_up) or iface is None or remote is None:
            return False
        if iface == "lo" or glob_any(iface, tunnel.interfaces) or remote.ip.is_loopback:
            return False
        ip = remote.ip
        return not any(n.version == ip.version and ip in n for n in tunnel.allowed_networks)

    def foreign(self, ef: EnrichedFlow) -> bool:
        """Whether the remote country is known and not the home country.

        Without a configured home country every known country counts as foreign, so rules
        that need "abroad" still work on a fresh install (they key on more than this).
        """
        country = ef.remote.country if ef.remote is not None else None
        if not country:
            return False
        home = self.policy.home_country
        return home is None or country.upper() != home

    def action(self, rule_id: str) -> Action:
        """What to do with this rule's findings."""
        return self.policy.action_for(rule_id)
