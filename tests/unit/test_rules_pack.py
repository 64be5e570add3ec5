"""The bundled rule pack: every rule validates, and has positive and negative examples here.

Each bundled rule id maps to examples built from tests/builders.py. The full pack runs on each
example (as in `snapshot`), so a rule that fires too widely shows up in another rule's
negative examples too. A rule added to the pack without both kinds of example fails
`test_every_bundled_rule_has_examples`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import pytest

from netwatch.detect.engine import RuleEngine
from netwatch.detect.loader import bundled_rule_files, check_rule_files, load_rules
from netwatch.model import (
    DefaultRoute,
    Direction,
    EndpointPattern,
    EnrichedFlow,
    ExpectedVpn,
    HostFacts,
    ListHit,
    Policy,
    Scope,
    SoftEtherConfig,
    Transport,
    TunnelPolicy,
)
from tests.builders import T0, make_flow, make_label, make_process, make_remote


def flow(
    *,
    process: str | None = "curl",
    remote_ip: str | None = "90.189.249.23",
    remote_port: int = 443,
    local_ip: str = "192.168.1.13",
    local_port: int = 51000,
    transport: Transport = Transport.TCP,
    direction: Direction = Direction.OUTBOUND,
    country: str | None = "RU",
    jurisdiction: tuple[str, ...] = (),
    lists: tuple[str, ...] = (),
    label: tuple[str, bool, tuple[tuple[str, str], ...]] | None = None,
    sni: str | None = None,
    dns_name: str | None = None,
    http_host: str | None = None,
    bytes_sent: int | None = 5,
    bytes_received: int | None = 4200,
    duration: float = 1.0,
    cmdline: tuple[str, ...] | None = None,
    at: float = T0,
) -> EnrichedFlow:
    """A flow with just the facts an example needs."""
    remote = None
    if remote_ip is not None:
        remote = replace(
            make_remote(remote_ip, country=country, jurisdiction=jurisdiction),
            lists=tuple(ListHit(name, "test list") for name in lists),
        )
    ef = make_flow(
        remote_ip=remote_ip,
        remote_port=remote_port,
        local_ip=local_ip,
        local_port=local_port,
        transport=transport,
        direction=direction,
        process=None if process is None else make_process(process, cmdline=cmdline),
        state="LISTEN" if direction is Direction.LISTEN else "ESTABLISHED",
        bytes_sent=bytes_sent,
        bytes_received=bytes_received,
        label=None
        if label is None
        else make_label(label[0], "vpn" if label[1] else "web", label[1], evidence=label[2]),
        sni=sni,
        dns_name=dns_name,
        first_seen=at,
        last_seen=at + duration,
        remote=remote,
    )
    return replace(ef, flow=replace(ef.flow, http_host=http_host))


def listen(
    process: str, port: int, ip: str = "0.0.0.0", transport: Transport = Transport.TCP
) -> EnrichedFlow:
    return flow(
        process=process,
        remote_ip=None,
        local_ip=ip,
        local_port=port,
        transport=transport,
        direction=Direction.LISTEN,
        bytes_sent=None,
        bytes_received=None,
    )


def inbound(
    process: str, peers: Sequence[tuple[str, str]], port: int = 443, at: float = T0
) -> list[EnrichedFlow]:
    """One inbound flow to `port` from each (address, country)."""
    return [
        flow(
            process=process,
            remote_ip=ip,
            remote_port=40000 + i,
            local_port=port,
            direction=Direction.INBOUND,
            country=cc,
            at=at,
        )
        for i, (ip, cc) in enumerate(peers)
    ]


VPNGATE_HOST = HostFacts(
    T0,
    softether=(
        SoftEtherConfig(
            "/var/lib/softether/vpn_server.config", ("DEFAULT", "VPNGATE"), (443,), True
        ),
    ),
)
PLAIN_HOST = HostFacts(
    T0, softether=(SoftEtherConfig("/var/lib/softether/vpn_server.config", ("DEFAULT",), (443,)),)
)
EYES = ("5 Eyes", "9 Eyes", "14 Eyes")
TOR_SNI = "www.q3vbzmkd4ptpbw.com"


def tor_flow(**kw: object) -> EnrichedFlow:
    """A flow the dissectors labelled Tor (an anonymizer label, as `labels.anonymizer` makes)."""
    ef = flow(process=None, sni=TOR_SNI, **kw)  # type: ignore[arg-type]
    label = make_label("tor", "anonymizer", True, evidence=(("sni", TOR_SNI),))
    return replace(ef, flow=replace(ef.flow, label=label))


def ultrasurf_flow(**kw: object) -> EnrichedFlow:
    """A flow the dissectors labelled UltraSurf (an anonymizer label, by its magic)."""
    ef = flow(process="u1404", **kw)  # type: ignore[arg-type]
    label = make_label("ultrasurf", "anonymizer", True, evidence=(("magic", "cc1c30415ba43866"),))
    return replace(ef, flow=replace(ef.flow, label=label))


PEERS = [
    ("198.51.100.10", "DE"),
    ("203.0.113.20", "FR"),
    ("192.0.2.30", "JP"),
    ("198.51.100.40", "US"),
]


@dataclass
class Example:
    """Flows for one evaluation; `before` flows are evaluated one tick earlier."""

    flows: list[EnrichedFlow]
    host: HostFacts | None = None
    policy: Policy | None = None
    before: list[EnrichedFlow] = field(default_factory=list)
    why: str = ""
    before_host: HostFacts | None = None


def ex(flows: EnrichedFlow | list[EnrichedFlow], why: str, **kw: object) -> Example:
    return Example(flows if isinstance(flows, list) else [flows], why=why, **kw)  # type: ignore[arg-type]


WG_HANDSHAKE = flow(
    process=None,
    transport=Transport.UDP,
    remote_ip="203.0.113.5",
    remote_port=51820,
    label=("wireguard", True, (("handshake", "initiation"),)),
)
"""A WireGuard handshake to 203.0.113.5:51820 seen in a capture (no process)."""
MULLVAD_EXPECTED = Policy(expected_vpn=(ExpectedVpn("mine", protocols=("mullvad",)),))
BY_ADDRESS = flow(
    process="python3",
    transport=Transport.UDP,
    remote_ip="198.51.100.7",
    remote_port=51820,
    label=("mullvad", True, (("address_list", "mullvad 198.51.100.7/32 (https://x, 2026-12-02)"),)),
)
"""A flow labelled by a provider's address list only (`enrich.ranges`)."""

TUNNEL = Policy(
    tunnel=TunnelPolicy(
        required=True,
        interfaces=("wg*", "tun*"),
        allowed_networks=(ipaddress.ip_network("192.168.1.0/24"),),
    )
)
"""`[policy.tunnel]`: traffic must go by wg*/tun*; the LAN may go direct."""
OPTIONAL_TUNNEL = Policy(tunnel=TunnelPolicy(required=False))
"""`[policy.tunnel]` that is not required: traffic must use the tunnel only while it is up."""


def by(interface: str | None, scope: Scope = Scope.GLOBAL, **kw: object) -> EnrichedFlow:
    """A flow captured on `interface`, its remote of the given scope."""
    ef = flow(**kw)  # type: ignore[arg-type]
    remote = None if ef.remote is None else replace(ef.remote, scope=scope)
    egress = None if interface is None else "capture"
    return replace(ef, flow=replace(ef.flow, interface=interface, egress_by=egress), remote=remote)


def links(*interfaces: str, v4: str | None = "wg0", v6: str | None = "eth0") -> HostFacts:
    """Host facts with these interfaces and default routes (IPv4 by `v4`, IPv6 by `v6`)."""
    return HostFacts(
        T0, interfaces=interfaces, routes=(DefaultRoute("ipv4", v4), DefaultRoute("ipv6", v6))
    )


V6 = {"remote_ip": "2001:db8:77::9", "local_ip": "2001:db8:1::13"}
"""An IPv6 conversation (documentation addresses)."""
TUNNEL_UP = links("eth0", "lo", "wg0")
"""wg0 exists; IPv4 goes through it, IPv6 by eth0 (an IPv4-only tunnel)."""
TUNNEL_GONE = links("eth0", "lo", v4="eth0")
"""wg0 is gone: everything leaves by eth0."""


def later(ef: EnrichedFlow, sent: int) -> EnrichedFlow:
    """The same flow a tick later, having sent `sent` bytes in all."""
    f = ef.flow
    return replace(ef, flow=replace(f, bytes_sent=sent, last_seen=(f.last_seen or T0) + 10))


def dns_by(interface: str, remote_ip: str = "198.51.100.53", **kw: object) -> EnrichedFlow:
    """A DNS query over UDP captured on `interface`."""
    return by(
        interface, process="systemd-resolved", remote_ip=remote_ip, remote_port=53,
        transport=Transport.UDP, **kw,
    )  # fmt: skip


OPENVPN_EXPECTED = Policy(expected_vpn=(ExpectedVpn("work", process=("openvpn",)),))
WG_EXPECTED = Policy(
    expected_vpn=(
        ExpectedVpn(
            "wg",
            protocols=("wireguard",),
            endpoints=(EndpointPattern(ipaddress.ip_network("203.0.113.5/32"), 51820),),
        ),
    )
)
NATT = ("softether", True, (("pack_opcode", "nat_t_register"), ("pack_svc_name", "SoftEther_VPN")))

EXAMPLES: dict[str, tuple[list[Example], list[Example]]] = {
    "vpngate.list_fetch": (
        [
            ex(flow(sni="www.vpngate.net", remote_ip="203.0.113.7"), "TLS SNI www.vpngate.net"),
            ex(
                flow(
                    process="python3",
                    remote_port=80,
                    http_host="www.vpngate.net",
                    label=("vpngate", True, (("http_path", "/api/iphone/"),)),
                ),
                "clear HTTP GET /api/iphone/",
            ),
            ex(
                flow(
                    process=None,
                    remote_port=8080,
                    label=("vpngate", True, (("body_prefix", "*vpn_servers"),)),
                ),
                "a response body starting *vpn_servers (mirror on a random port, from a pcap)",
            ),
            ex(
                flow(process="vpncmgr", dns_name=None),
                "the motivating case: vpncmgr, 5 B up / 4.2 KB down to RU",
            ),
            ex(
                flow(process="curl", dns_name="api.vpngate.jp", remote_port=80),
                "DNS name vpngate.jp",
            ),
        ],
        [
            ex(flow(sni="www.example.com"), "ordinary HTTPS browsing"),
            ex(flow(sni="notvpngate.net"), "a name that only ends in the same letters"),
            ex(
                flow(
                    process="vpncmgr",
                    dns_name="vpn.example.com",
                    bytes_sent=50_000_000,
                    duration=3600,
                ),
                "SoftEther to a company VPN server looked up by name, long and large",
            ),
            ex(
                flow(process="vpnclient", bytes_sent=9_000_000, bytes_received=90_000_000),
                "a large session is a tunnel, not a list",
            ),
            ex(
                flow(
                    process="python3",
                    sni="www.vpngate.net",
                    cmdline=("/usr/bin/python3", "-m", "netwatch", "lists", "update"),
                ),
                "netwatch's own opt-in list update",
            ),
        ],
    ),
    "vpngate.relay_mode": (
        [
            ex(listen("vpnserver", 443), "a VPNGATE hub in vpn_server.config", host=VPNGATE_HOST),
            ex(
                listen("vpnclient", 995),
                "the SoftEther client listening publicly (in-client relay)",
            ),
            ex(
                [listen("vpnserver", 443), *inbound("vpnserver", PEERS)],
                "strangers from 4 countries connect to vpnserver",
                host=PLAIN_HOST,
            ),
            ex(
                flow(process=None, transport=Transport.UDP, remote_port=5004, label=NATT),
                "NAT-T registration (nat_t_register)",
            ),
        ],
        [
            ex(
                [
                    listen("vpnserver", 443),
                    *inbound("vpnserver", [("198.51.100.10", "DE"), ("198.51.100.11", "DE")]),
                ],
                "a company SoftEther server with two staff members",
                host=PLAIN_HOST,
            ),
            ex(listen("vpnclient", 9930, "127.0.0.1"), "the client's local management port"),
            ex(
                [listen("nginx", 443), *inbound("nginx", PEERS * 3)],
                "a web server with visitors from many countries",
            ),
        ],
    ),
    "vpngate.relay_connection": (
        [
            ex(
                flow(process="openvpn", remote_port=1195, lists=("vpngate",)),
                "address on the VPN Gate list",
            ),
            ex(
                flow(process="vpnclient", sni="public-vpn-226.opengw.net"),
                "relay name *.opengw.net",
            ),
            ex(
                flow(process="vpnclient", remote_ip="219.100.37.5"),
                "the University of Tsukuba's relays",
            ),
        ],
        [
            ex(flow(process="openvpn", remote_ip="203.0.113.9"), "an address on no list"),
            ex(
                flow(process="sshd", remote_ip="219.100.37.5", direction=Direction.INBOUND),
                "inbound from a relay address is not connecting to a relay",
            ),
        ],
    ),
    "softether.cloud": (
        [
            ex(flow(process="vpnserver", sni="DDNS"), "TLS server name DDNS"),
            ex(
                flow(
                    process="vpnserver",
                    dns_name="x1.x2.servers.nat-traversal.softether-network.net",
                ),
                "NAT-T name",
            ),
            ex(
                flow(process=None, transport=Transport.UDP, remote_port=5004, label=NATT),
                "NAT-T datagram in a pcap",
            ),
            ex(
                flow(process="vpnbridge", transport=Transport.UDP, remote_port=80),
                "keep-alive to UDP 80",
            ),
            ex(
                flow(
                    process=None, remote_port=80, http_host="get-my-ip.ddns.softether-network.net"
                ),
                "clear HTTP IP echo",
            ),
        ],
        [
            ex(flow(sni="softether.org.example.com"), "a name that merely contains softether.org"),
            ex(
                flow(process="ffmpeg", transport=Transport.UDP, remote_port=5004), "RTP on UDP 5004"
            ),
            ex(
                flow(process="vpnclient", transport=Transport.UDP, remote_port=80),
                "a client does not send keep-alives",
            ),
        ],
    ),
    "vpn.unexpected": (
        [
            ex(
                flow(process="openvpn", transport=Transport.UDP, remote_port=1194),
                "openvpn talking, no policy",
            ),
            ex(
                WG_HANDSHAKE,
                "a WireGuard handshake in a pcap",
            ),
            ex(
                listen("openvpn", 1194, transport=Transport.UDP),
                "an OpenVPN server waiting for connections",
            ),
            ex(flow(process="firefox", sni="nordvpn.com"), "contacting a VPN provider"),
        ],
        [
            ex(
                flow(process="openvpn", transport=Transport.UDP, remote_port=1194),
                "expected by policy",
                policy=OPENVPN_EXPECTED,
            ),
            ex(
                WG_HANDSHAKE,
                "WireGuard to the expected endpoint",
                policy=WG_EXPECTED,
            ),
            ex(flow(process="firefox", sni="www.example.com"), "ordinary browsing"),
            ex(
                flow(
                    process=None,
                    remote_port=80,
                    label=("vpngate", True, (("http_path", "/api/iphone/"),)),
                ),
                "fetching the VPN Gate list is not using a VPN",
            ),
            ex(listen("openvpn", 1194, ip="127.0.0.1"), "a loopback-only listener"),
            ex(BY_ADDRESS, "only an address list says VPN: vpn.provider_address reports it"),
            ex(ultrasurf_flow(), "an anonymizer: anon.circumvention reports it"),
            ex(tor_flow(remote_port=443), "Tor: anon.tor reports it"),
        ],
    ),
    "vpn.provider_address": (
        [
            ex(BY_ADDRESS, "UDP to an address in Mullvad's list, no signature"),
            ex(
                replace(BY_ADDRESS, flow=replace(BY_ADDRESS.flow, direction=Direction.INBOUND)),
                "a peer coming from a provider's range (iCloud Private Relay egress)",
            ),
        ],
        [
            ex(
                WG_HANDSHAKE,
                "a WireGuard signature: vpn.unexpected reports it instead",
            ),
            ex(BY_ADDRESS, "Mullvad expected by policy", policy=MULLVAD_EXPECTED),
            ex(flow(process="firefox", sni="www.example.com"), "ordinary browsing"),
        ],
    ),
    "vpn.endpoint_jurisdiction": (
        [
            ex(
                flow(process="openvpn", remote_ip="203.0.113.5", country="US", jurisdiction=EYES),
                "OpenVPN to the US",
            ),
        ],
        [
            ex(flow(process="openvpn", country="RU"), "a VPN endpoint outside the groups"),
            ex(flow(process="firefox", country="US", jurisdiction=EYES), "not a VPN"),
            ex(
                tor_flow(remote_ip="203.0.113.5", country="US", jurisdiction=EYES),
                "Tor is an anonymizer, not a VPN endpoint",
            ),
        ],
    ),
    "anon.tor": (
        [
            ex(flow(process="curl", remote_port=9001, lists=("tor",)), "a Tor relay address"),
            ex(flow(process="tor", remote_ip="198.51.100.7", remote_port=9001), "the tor program"),
            ex(listen("tor", 9050, "127.0.0.1"), "a local Tor SOCKS proxy"),
            ex(
                flow(process=None, sni="www.q3vbzmkd4ptpbw.com", remote_port=9001),
                "Tor-like random server name",
            ),
            ex(tor_flow(remote_port=443), "a flow labelled Tor on the web port"),
        ],
        [
            ex(flow(process="firefox", sni="www.example.com"), "ordinary browsing"),
            ex(listen("python3", 9050, "127.0.0.1"), "another program on port 9050"),
            ex(
                flow(process=None, sni="www.q3vbzmkd4ptpbw.com", remote_port=443),
                "random-looking name on the web port",
            ),
        ],
    ),
    "anon.circumvention": (
        [ex(ultrasurf_flow(), "a stream opening with UltraSurf's magic")],
        [
            ex(tor_flow(remote_port=443), "Tor has its own rule"),
            ex(flow(process="firefox", sni="www.example.com"), "ordinary browsing"),
        ],
    ),
    "process.first_connection": (
        [ex(flow(process="curl"), "curl's first connection")],
        [
            ex(
                flow(process="curl", remote_ip="203.0.113.8"),
                "curl again",
                before=[flow(process="curl")],
            ),
            ex(flow(process=None), "no process known"),
            ex(flow(process="curl", remote_ip="127.0.0.1"), "loopback"),
        ],
    ),
    "vpn.leak": (
        [
            ex(by("eth0", process="curl"), "curl to the internet by eth0", policy=TUNNEL),
            ex(
                by("veth0", Scope.DOCUMENTATION, remote_ip="203.0.113.9"),
                "documentation addresses count as the internet",
                policy=TUNNEL,
            ),
            ex(
                [by("wg0", remote_ip="198.51.100.80"), by("eth0")],
                "not required, but the tunnel is up (a flow uses wg0)",
                policy=OPTIONAL_TUNNEL,
            ),
        ],
        [
            ex(by("wg0"), "through the tunnel", policy=TUNNEL),
            ex(by("eth0"), "no [policy.tunnel]"),
            ex(by("eth0"), "the tunnel is neither required nor up", policy=OPTIONAL_TUNNEL),
            ex(
                [by("wg0", remote_ip="198.51.100.80"), by("eth0")],
                "a tunnel is up but no [policy.tunnel] says to use it",
            ),
            ex(by(None), "interface unknown (no capture)", policy=TUNNEL),
            ex(
                by("eth0", Scope.DOCUMENTATION, **V6),
                "IPv6 beside an IPv4-only tunnel: vpn.ipv6_leak reports it",
                policy=TUNNEL,
                host=TUNNEL_UP,
            ),
            ex(
                by("eth0", Scope.PRIVATE, remote_ip="192.168.1.1"),
                "the LAN, an allowed network",
                policy=TUNNEL,
            ),
            ex(
                by("eth0", Scope.PRIVATE, remote_ip="10.9.9.9"),
                "a private address outside allowed_networks is not the internet",
                policy=TUNNEL,
            ),
            ex(by("lo", Scope.LOOPBACK, remote_ip="127.0.0.1"), "loopback", policy=TUNNEL),
            ex(
                by(
                    "eth0",
                    process="wireguard",
                    transport=Transport.UDP,
                    remote_port=51820,
                    label=("wireguard", True, (("handshake", "initiation"),)),
                ),
                "the tunnel's own outer packets leave by eth0",
                policy=TUNNEL,
            ),
            ex(
                by("eth0", direction=Direction.INBOUND),
                "an inbound flow is not traffic this host sent out",
                policy=TUNNEL,
            ),
            ex(dns_by("eth0"), "DNS: vpn.dns_leak reports it", policy=TUNNEL),
        ],
    ),
    "vpn.dns_leak": (
        [
            ex(dns_by("eth0"), "a DNS query to a public resolver by eth0", policy=TUNNEL),
            ex(
                dns_by("eth0", remote_ip="10.0.0.1"),
                "a resolver on a private network not allowed",
                policy=TUNNEL,
            ),
            ex(
                replace(
                    dns_by("eth0"),
                    flow=replace(
                        dns_by("eth0").flow,
                        key=replace(dns_by("eth0").flow.key, transport=Transport.TCP),
                    ),
                ),
                "DNS over TCP",
                policy=TUNNEL,
            ),
        ],
        [
            ex(dns_by("wg0"), "DNS through the tunnel", policy=TUNNEL),
            ex(dns_by("tun3"), "DNS through an OpenVPN tunnel", policy=TUNNEL),
            ex(dns_by("eth0"), "no [policy.tunnel]"),
            ex(dns_by("eth0", remote_ip="192.168.1.1"), "a LAN resolver, allowed", policy=TUNNEL),
            ex(dns_by("lo", remote_ip="127.0.0.53"), "the local stub resolver", policy=TUNNEL),
            ex(by("eth0"), "not DNS: vpn.leak reports it", policy=TUNNEL),
        ],
    ),
    "vpn.ipv6_leak": (
        [
            ex(
                by("eth0", Scope.DOCUMENTATION, **V6),
                "IPv6 by eth0 while the tunnel carries only IPv4",
                policy=TUNNEL,
                host=TUNNEL_UP,
            ),
            ex(
                by("eth0", Scope.DOCUMENTATION, **V6),
                "no routes known: the tunnel is not known to carry IPv6",
                policy=TUNNEL,
            ),
        ],
        [
            ex(
                by("eth0", Scope.DOCUMENTATION, **V6),
                "the tunnel carries IPv6 too: vpn.leak reports it",
                policy=TUNNEL,
                host=links("eth0", "wg0", v6="wg0"),
            ),
            ex(by("wg0", Scope.DOCUMENTATION, **V6), "IPv6 through the tunnel", policy=TUNNEL),
            ex(by("eth0"), "IPv4 by eth0: vpn.leak reports it", policy=TUNNEL, host=TUNNEL_UP),
            ex(by("eth0", Scope.DOCUMENTATION, **V6), "no [policy.tunnel]", host=TUNNEL_UP),
        ],
    ),
    "vpn.tunnel_down": (
        [
            ex(
                later(by("eth0", remote_ip="198.51.100.70"), 9000),
                "wg0 was there a tick ago and is gone; curl goes on by eth0",
                policy=OPTIONAL_TUNNEL,
                before=[by("wg0", remote_ip="198.51.100.71")],
                before_host=TUNNEL_UP,
                host=TUNNEL_GONE,
            ),
        ],
        [
            ex(
                later(by("eth0", remote_ip="198.51.100.70"), 9000),
                "the tunnel never existed: nothing went down",
                policy=OPTIONAL_TUNNEL,
                before=[by("eth0", remote_ip="198.51.100.71")],
                before_host=TUNNEL_GONE,
                host=TUNNEL_GONE,
            ),
            ex(
                later(by("eth0", remote_ip="198.51.100.70"), 9000),
                "the tunnel is still up",
                policy=OPTIONAL_TUNNEL,
                before=[by("wg0", remote_ip="198.51.100.71")],
                before_host=TUNNEL_UP,
                host=TUNNEL_UP,
            ),
            ex(
                later(by("eth0", remote_ip="198.51.100.70"), 9000),
                "no [policy.tunnel]: netwatch does not know what the tunnel is",
                before=[by("wg0", remote_ip="198.51.100.71")],
                before_host=TUNNEL_UP,
                host=TUNNEL_GONE,
            ),
            ex(
                later(by("wg0", remote_ip="198.51.100.70"), 9000),
                "a flow that went by the tunnel is not in the clear",
                policy=OPTIONAL_TUNNEL,
                before=[by("wg0", remote_ip="198.51.100.71")],
                before_host=TUNNEL_UP,
                host=TUNNEL_GONE,
            ),
        ],
    ),
    "geo.new_country": (
        [
            ex(
                flow(process="firefox", remote_ip="203.0.113.8", country="RU"),
                "firefox to RU after the US",
                before=[flow(process="firefox", remote_ip="198.51.100.8", country="US")],
            )
        ],
        [
            ex(
                flow(process="firefox", remote_ip="198.51.100.9", country="US"),
                "firefox to the US again",
                before=[flow(process="firefox", remote_ip="198.51.100.8", country="US")],
            ),
            ex(
                flow(process="firefox", country="RU"),
                "a new program's first countries are its baseline",
            ),
        ],
    ),
}


def run(example: Example) -> list[str]:
    engine = RuleEngine(load_rules(), example.policy)
    if example.before:
        engine.evaluate(example.before, T0 - 10, example.before_host)
    alerts = engine.evaluate(example.flows, T0 + 5, example.host)
    return [a.rule_id for a in alerts]


def _cases(positive: bool) -> list[object]:
    out = []
    for rule_id, (pos, neg) in EXAMPLES.items():
        for i, e in enumerate(pos if positive else neg):
            out.append(pytest.param(rule_id, e, id=f"{rule_id}-{i}-{e.why[:30]}"))
    return out


def test_bundled_pack_validates() -> None:
    ruleset, problems = check_rule_files(bundled_rule_files())
    assert problems == []
    assert len(ruleset.rules) >= 9


def test_every_bundled_rule_has_examples() -> None:
    for rule_id in load_rules().ids:
        pos, neg = EXAMPLES.get(rule_id, ([], []))
        assert pos, f"bundled rule {rule_id} has no positive example in EXAMPLES"
        assert neg, f"bundled rule {rule_id} has no negative example in EXAMPLES"


def test_examples_name_only_bundled_rules() -> None:
    assert set(EXAMPLES) <= set(load_rules().ids)


@pytest.mark.parametrize(("rule_id", "example"), _cases(True))
def test_positive(rule_id: str, example: Example) -> None:
    assert rule_id in run(example), example.why


@pytest.mark.parametrize(("rule_id", "example"), _cases(False))
def test_negative(rule_id: str, example: Example) -> None:
    assert rule_id not in run(example), example.why


def test_ordinary_browsing_raises_no_vpngate_alert() -> None:
    flows = [
        flow(process="firefox", sni=f"www.site{i}.example", remote_ip=f"198.51.100.{i}", country=cc)
        for i, cc in enumerate(["US", "DE", "JP", "RU", "FR", "NL"], start=1)
    ]
    rules = run(Example(flows))
    assert not [r for r in rules if r.startswith("vpngate.")]


def test_remote_scope_documentation_counts_for_relays() -> None:
    # The live tests use documentation addresses; they must count as strangers.
    flows = [listen("vpnserver", 443), *inbound("vpnserver", PEERS)]
    flows = [
        replace(f, remote=replace(f.remote, scope=Scope.DOCUMENTATION)) if f.remote else f
        for f in flows
    ]
    assert "vpngate.relay_mode" in run(Example(flows))
