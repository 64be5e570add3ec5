"""`netwatch check`'s judgement: "is my PC safe?" from facts gathered by `sources.vpncheck`.

Pure functions from recorded facts (packages, listeners, SoftEther config files, stored
alerts) to `Finding`s, each with a severity, the evidence and what to do, so every verdict is
tested without the machine it describes. The worst case is a VPN Gate relay: strangers'
traffic leaves through this computer's address (https://www.vpngate.net/en/about_overview.aspx).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime

from netwatch.detect.policy import glob_any
from netwatch.errors import one_line
from netwatch.model import (
    Alert,
    CheckFacts,
    DefaultRoute,
    Finding,
    HostFacts,
    InstalledVpn,
    Listener,
    Severity,
    SoftEtherAccount,
    SoftEtherConfig,
    TunnelPolicy,
)

VPN_PROGRAMS = frozenset(
    {"vpnserver", "vpnbridge", "vpnclient", "openvpn", "charon", "charon-systemd", "pluto", "tor"}
)
"""Process names of VPN and anonymizer servers: whatever they listen on lets others in."""

NO_OWNER_VPN_PORTS = {("udp", 51820): "WireGuard's usual port (a kernel tunnel has no process)"}
"""Listeners without a process that still mean a VPN: the kernel owns WireGuard's socket."""

VPNGATE_DOMAIN = ".opengw.net"
"""VPN Gate relays' DNS names are `<relay>.opengw.net` (https://www.vpngate.net/en/)."""

INFINITE_RETRIES = 4294967295

ADVICE_RELAY = (
    "This computer is set up as a VPN Gate relay: strangers use it as their VPN, and what they "
    "do online appears to come from your address. Delete the VPNGATE hub (vpncmd localhost "
    "/SERVER /CMD HubDelete VPNGATE, or in the SoftEther server manager, where the VPN Gate "
    "service is also turned off), and if you do not run a VPN server on purpose, stop it for "
    "good: systemctl disable --now softether-vpnserver, then apt purge softether-vpnserver."
)
ADVICE_ACCOUNT = (
    "A SoftEther connection setting sends this computer's traffic through another machine. If "
    "you did not make it, delete it (vpncmd localhost /CLIENT /CMD AccountDelete NAME); if you "
    "keep it, stop it starting by itself (AccountStartupRemove NAME) and from reconnecting "
    "(AccountRetrySet NAME /NUM:0 /INTERVAL:15)."
)
ADVICE_PACKAGE = (
    "VPN software is installed. If you did not install it on purpose, remove it "
    "(apt purge PACKAGE) and look at what else was installed with it (/var/log/apt/history.log)."
)
ADVICE_LISTENER = (
    "A VPN program waits for connections from other machines. If this computer is not meant "
    "to be a VPN server, stop and disable the program's service and remove its package."
)
ADVICE_UNREAD = (
    "netwatch could not read all of this file, so what it says was not checked. Run the check "
    "as root; if the file is damaged, the program that owns it may not read it either."
)
ADVICE_ROUTE = (
    "Traffic that should go through the VPN can leave by the physical interface, where your "
    "provider and network see it with your real address. Turn on the VPN client's kill switch "
    "or 'block connections without VPN', and if IPv6 is the gap, let the VPN carry IPv6 or turn "
    "IPv6 off on the physical interface (sysctl net.ipv6.conf.IFACE.disable_ipv6=1)."
)
ADVICE_NO_POLICY = (
    "A VPN tunnel is up, but netwatch was not told that traffic must use it, so it does not "
    "alert when traffic goes around it. Add [policy.tunnel] with required = true to the config "
    "(netwatch config show prints where it is) to get vpn.leak and vpn.dns_leak alerts."
)
ADVICE_FOREIGN = (
    "A SoftEther connection setting sends this computer's traffic to a server in another "
    "country, whose law and operator then see it. If you did not set this up, delete it "
    "(vpncmd localhost /CLIENT /CMD AccountDelete NAME)."
)
ADVICE_ALERT = (
    "netwatch saw this traffic recently. Look at the alerts (netwatch export --rule RULE) to see "
    "which program it was, then follow the advice for that program above."
)


def check(
    facts: CheckFacts,
    alerts: Iterable[Alert] = (),
    notes: Sequence[str] = (),
    damaged: Sequence[str] = (),
    *,
    tunnel: TunnelPolicy | None = None,
    home_country: str | None = None,
) -> list[Finding]:
    """Every finding, worst first.

    `notes` are things not checked (a missing store, info); `damaged` are inputs that could not
    be read (a damaged store, low), which make the check incomplete. `tunnel` and
    `home_country` are the site policy's (`[policy.tunnel]`, `home_country`).
    """
    found = [
        *package_findings(facts.packages),
        *config_findings(facts.host, dict(facts.countries), home_country),
        *tunnel_findings(facts.host.interfaces, facts.host.routes, tunnel),
        *listener_findings(facts.listeners),
        *alert_findings(alerts),
        *(
            Finding(f"not_checked:{i}", Severity.INFO, one_line(n))
            for i, n in enumerate([*facts.problems, *notes])
        ),
        *(
            Finding(f"unreadable:store:{i}", Severity.LOW, "could not read", (one_line(d),))
            for i, d in enumerate(damaged)
        ),
    ]
    return sorted(found, key=lambda f: (-f.severity.rank, f.id))


def worst(findings: Iterable[Finding]) -> Severity | None:
    """The highest severity found, None when nothing was."""
    return max((f.severity for f in findings), key=lambda s: s.rank, default=None)


def incomplete(findings: Iterable[Finding]) -> bool:
    """Something could not be read, so a clean answer would not be the whole truth."""
    return any(f.id.startswith("unreadable:") for f in findings)


def package_findings(packages: Iterable[InstalledVpn]) -> list[Finding]:
    """Installed VPN software: low while one of its programs runs, info otherwise."""
    return [
        Finding(
            f"package:{p.package}",
            Severity.LOW if p.running else Severity.INFO,
            f"{p.package} {p.version} is installed" + (" and running" if p.running else ""),
            tuple(f"running: {r}" for r in p.running) or ("not running",),
            ADVICE_PACKAGE.replace("PACKAGE", p.package),
        )
        for p in packages
    ]


def config_findings(
    host: HostFacts, countries: Mapping[str, str] | None = None, home: str | None = None
) -> list[Finding]:
    """SoftEther files: relay hubs, client accounts (and those whose server is abroad:
    `countries` maps server addresses to countries, `home` is the user's country), and files
    that could not be read."""
    countries = countries or {}
    found = [
        Finding(f"unreadable:{i}", Severity.LOW, "could not read", (one_line(p),), ADVICE_UNREAD)
        for i, p in enumerate(host.problems)
    ]
    for cfg in host.softether:
        path = one_line(cfg.path)
        if cfg.damage:
            found.append(
                Finding(
                    f"unreadable:{path}",
                    Severity.LOW,
                    f"could not read all of {path}",
                    (f"{path}: {one_line(cfg.damage)}",),
                    ADVICE_UNREAD,
                )
            )
        if "VPNGATE" in cfg.hubs:
            found.append(_relay(cfg, path))
        found += [_account(a, path) for a in cfg.accounts if _account_reasons(a)]
        found += [
            _foreign(a, path, country, home)
            for a in cfg.accounts
            if (country := countries.get(a.hostname.strip())) and home and country != home
        ]
    return found


def _foreign(a: SoftEtherAccount, path: str, country: str, home: str) -> Finding:
    name = one_line(a.name)
    server = one_line(a.hostname)
    return Finding(
        f"softether.foreign_server:{path}:{name}",
        Severity.MEDIUM,
        f"SoftEther connection {name!r} goes to a server in {country}",
        (f"{path}: account {name}, server {server}", f"{server} is in {country}, home is {home}"),
        ADVICE_FOREIGN.replace("NAME", name),
    )


def tunnel_findings(
    interfaces: Sequence[str], routes: Sequence[DefaultRoute], policy: TunnelPolicy | None
) -> list[Finding]:
    """Whether internet traffic would go around a VPN tunnel, from the default routes.

    Judged only when routes were looked at and either a tunnel policy exists or a tunnel
    interface is up (no tunnel, no policy: there is nothing to leak around). The policy's
    interface globs say what a tunnel is (`wg*`, `tun*` without a policy).
    """
    globs = (policy or TunnelPolicy()).interfaces
    tunnels = [i for i in interfaces if glob_any(i, globs)]
    required = policy is not None and policy.required
    if not routes or (policy is None and not tunnels):
        return []

    def via_tunnel(r: DefaultRoute) -> bool:
        return r.interface is not None and glob_any(r.interface, globs)

    by_family = {r.family: r for r in routes}
    v4 = by_family.get("ipv4")
    found: list[Finding] = []
    evidence = tuple(f"{r.family}: default route by {r.interface or 'none'}" for r in routes)
    up = ", ".join(tunnels) or "none"
    for r in routes:
        if r.interface is None or via_tunnel(r):
            continue
        if r.family == "ipv6" and v4 is not None and via_tunnel(v4):
            found.append(
                Finding(
                    "tunnel.ipv6_leak",
                    Severity.HIGH,
                    f"IPv6 goes around the tunnel: it leaves by {r.interface} while IPv4 "
                    f"goes through {v4.interface}",
                    (*evidence, f"tunnel interfaces up: {up}"),
                    ADVICE_ROUTE.replace("IFACE", r.interface),
                )
            )
        elif required or tunnels:
            why = "the tunnel is required" if required else f"{up} is up"
            found.append(
                Finding(
                    f"tunnel.outside:{r.family}",
                    Severity.HIGH if required else Severity.LOW,
                    f"{r.family.replace('ip', 'IP')} traffic to the internet leaves by "
                    f"{r.interface}, not a tunnel, although {why}",
                    (*evidence, f"tunnel interfaces up: {up}"),
                    ADVICE_ROUTE.replace("IFACE", r.interface),
                )
            )
    if not found:
        carried = ", ".join(sorted({r.interface for r in routes if r.interface})) or "no route"
        found.append(
            Finding(
                "tunnel.ok",
                Severity.INFO,
                f"internet traffic goes through {carried}",
                (*evidence, f"tunnel interfaces up: {up}"),
            )
        )
    if policy is None:
        found.append(
            Finding(
                "tunnel.no_policy",
                Severity.INFO,
                "a tunnel is up but no [policy.tunnel] says traffic must use it",
                (f"tunnel interfaces up: {up}",),
                ADVICE_NO_POLICY,
            )
        )
    return found


def _relay(cfg: SoftEtherConfig, path: str) -> Finding:
    ports = ", ".join(str(p) for p in cfg.listener_ports) or "none enabled"
    return Finding(
        f"softether.vpngate_relay:{path}",
        Severity.HIGH,
        "VPN Gate relay: a VPNGATE hub in the SoftEther server",
        (f"{path}: hub VPNGATE declared", f"listener ports: {ports}"),
        ADVICE_RELAY,
    )


def _account_reasons(a: SoftEtherAccount) -> list[str]:
    """Why a client account matters: it goes to VPN Gate, starts by itself, or reconnects."""
    reasons = []
    if a.hostname.lower().endswith(VPNGATE_DOMAIN) or "vpngate" in a.hostname.lower():
        reasons.append(f"server {one_line(a.hostname)} is a VPN Gate relay")
    if a.hub.upper() == "VPNGATE":
        reasons.append("hub VPNGATE (a VPN Gate relay's hub)")
    if a.startup:
        reasons.append("connects when the client service starts (StartupAccount)")
    if a.retries:
        times = "for ever" if a.retries >= INFINITE_RETRIES else f"up to {a.retries} times"
        reasons.append(f"reconnects {times} after a drop (NumRetry)")
    return reasons


def _account(a: SoftEtherAccount, path: str) -> Finding:
    name = one_line(a.name)
    target = f"{one_line(a.hostname) or '?'}:{a.port or '?'}"
    vpngate = any("VPN Gate" in r for r in _account_reasons(a))
    return Finding(
        f"softether.account:{path}:{name}",
        Severity.MEDIUM,
        f"SoftEther connection {name!r} to {target}" + (" (VPN Gate)" if vpngate else ""),
        (f"{path}: account {name}", *_account_reasons(a)),
        ADVICE_ACCOUNT.replace("NAME", name),
    )


def listener_findings(listeners: Iterable[Listener]) -> list[Finding]:
    """One finding per VPN program that listens (medium), and per ownerless VPN port (low)."""
    by_owner: dict[tuple[str, int | None], list[Listener]] = {}
    found = []
    for s in listeners:
        if s.process in VPN_PROGRAMS:
            by_owner.setdefault((s.process, s.pid), []).append(s)
        elif not s.process and (why := NO_OWNER_VPN_PORTS.get((s.transport, s.port))):
            found.append(
                Finding(
                    f"listener:{s.transport}/{s.port}",
                    Severity.LOW,
                    f"{s.transport.upper()} port {s.port} is open with no program: {why}",
                    (f"{s.transport} {s.address}:{s.port}",),
                    ADVICE_LISTENER,
                )
            )
    for (name, pid), socks in sorted(by_owner.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0)):
        ports = sorted({f"{s.transport.upper()} {s.port}" for s in socks})
        found.append(
            Finding(
                f"listener:{name}:{pid}",
                Severity.MEDIUM,
                f"{name} listens on {', '.join(ports)}",
                tuple(
                    f"{s.transport} {s.address}:{s.port} owned by {name} (pid {pid})"
                    for s in sorted(socks, key=lambda s: (s.transport, s.port, s.address))
                ),
                ADVICE_LISTENER,
            )
        )
    return found


def alert_findings(alerts: Iterable[Alert]) -> list[Finding]:
    """Recent stored alerts, one finding per rule: `vpngate.*` high, `vpn.*` medium."""
    by_rule: dict[str, list[Alert]] = {}
    for a in alerts:
        if a.rule_id.startswith(("vpngate.", "vpn.")):
            by_rule.setdefault(a.rule_id, []).append(a)
    found = []
    for rule, group in sorted(by_rule.items()):
        last = max(group, key=lambda a: a.last_seen)
        seen = datetime.fromtimestamp(last.last_seen, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        count = sum(a.count for a in group)
        found.append(
            Finding(
                f"alert:{rule}",
                Severity.HIGH if rule.startswith("vpngate.") else Severity.MEDIUM,
                f"recent alert {rule}: {one_line(last.title)}",
                (
                    f"{count} time{'s' if count != 1 else ''}, last at {seen}",
                    one_line(last.message),
                ),
                ADVICE_ALERT.replace("RULE", rule),
            )
        )
    return found
