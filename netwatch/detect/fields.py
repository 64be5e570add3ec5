"""The fields rules may test: one typed getter per name over an enriched flow and its context.

A rule condition names a field (`process.name`, `remote.country`, `sni`, ...); this module
says what type each field has and how to read it, so the condition compiler can check the
operators at load time and the engine reads values without dicts. `Env` carries what is not
in the flow: the policy view, the host facts and the time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from netwatch.model import EnrichedFlow, HostFacts, IPAddress


class Kind(StrEnum):
    """Value types a field can have; each has its own operators."""

    STR = "string"
    STRS = "list of strings"
    NUM = "number"
    BOOL = "boolean"
    IP = "address"


class PolicyLike(Protocol):
    """What fields need from the policy (implemented by `detect.policy.PolicyView`)."""

    def expected(self, ef: EnrichedFlow) -> bool:
        """Whether the flow belongs to VPN software the policy expects."""
        ...

    def trusted(self, ef: EnrichedFlow) -> bool:
        """Whether the remote address is in a trusted network."""
        ...

    def foreign(self, ef: EnrichedFlow) -> bool:
        """Whether the remote country differs from the home country (known countries only)."""
        ...

    def outside_tunnel(self, ef: EnrichedFlow, tunnel_up: bool = False) -> bool:
        """Whether the flow left by a non-tunnel interface while the tunnel is required or up."""
        ...

    def tunnel_interfaces(self) -> tuple[str, ...] | None:
        """`[policy.tunnel]`'s interface globs; None without a tunnel policy."""
        ...

    def tunnel_present(self, host: HostFacts | None) -> bool:
        """Whether a `[policy.tunnel]` interface exists."""
        ...

    def tunnel_ipv6(self, host: HostFacts | None) -> bool:
        """Whether the tunnel carries IPv6 (its IPv6 default route is a tunnel's)."""
        ...


@dataclass(frozen=True, slots=True)
class Env:
    """Everything a condition may look at besides the flow."""

    policy: PolicyLike
    now: float
    host: HostFacts | None = None
    listening: Mapping[int, tuple[str, ...]] = field(default_factory=dict)
    """This tick's non-loopback listening sockets by pid, as `tcp/443`."""
    tunnel_up: bool = False
    """Whether this tick's flows show a `[policy.tunnel]` interface carrying traffic."""


Getter = Callable[[EnrichedFlow, Env], Any]


@dataclass(frozen=True, slots=True)
class Field:
    """A field: its name, kind, getter and a one-line description for `rules list`."""

    name: str
    kind: Kind
    get: Getter
    doc: str


def _http_request(ef: EnrichedFlow, _env: Env) -> str | None:
    # The flow carries the request line; records written before it did keep the dissector's
    # label evidence.
    if ef.flow.http_request is not None:
        return ef.flow.http_request
    if ef.flow.label is not None:
        for e in ef.flow.label.evidence:
            if e.name == "http_request":
                return e.value
    return None


def _http_path(ef: EnrichedFlow, env: Env) -> str | None:
    request = _http_request(ef, env)
    if request is not None:
        parts = request.split(" ")
        return parts[1] if len(parts) > 1 else None
    if ef.flow.label is not None:
        for e in ef.flow.label.evidence:
            if e.name == "http_path":
                return e.value
    return None


def _body_prefix(ef: EnrichedFlow, _env: Env) -> str | None:
    # Latin-1: one character per byte, so a prefix condition reads the bytes as sent.
    if ef.flow.body_prefix is not None:
        return ef.flow.body_prefix.decode("latin-1")
    if ef.flow.label is not None:
        for e in ef.flow.label.evidence:
            if e.name == "body_prefix":
                return e.value
    return None


def _duration(ef: EnrichedFlow, _env: Env) -> float | None:
    f = ef.flow
    if f.first_seen is None or f.last_seen is None:
        return None
    return max(0.0, f.last_seen - f.first_seen)


def _total(ef: EnrichedFlow, _env: Env) -> int | None:
    s, r = ef.flow.bytes_sent, ef.flow.bytes_received
    if s is None and r is None:
        return None
    return (s or 0) + (r or 0)


def _names(ef: EnrichedFlow, _env: Env) -> tuple[str, ...]:
    f = ef.flow
    return tuple(n for n in (f.sni, f.dns_name, f.http_host) if n)


def _cert(part: str, missing: Any = None) -> Getter:
    """Read one part of the server certificate's names (`missing` when none was read)."""

    def get(ef: EnrichedFlow, _env: Env) -> Any:
        cert = ef.flow.tls_cert
        return missing if cert is None else getattr(cert, part)

    return get


def _remote_ip(ef: EnrichedFlow, _env: Env) -> IPAddress | None:
    r = ef.flow.key.remote
    return None if r is None else r.ip


def _remote_port(ef: EnrichedFlow, _env: Env) -> int | None:
    r = ef.flow.key.remote
    return None if r is None else r.port


def _org(ef: EnrichedFlow, _env: Env) -> str | None:
    r = ef.remote
    if r is None:
        return None
    if r.as_org:
        return r.as_org
    return r.owner.name if r.owner is not None else None


def _vpngate_hub(_ef: EnrichedFlow, env: Env) -> bool:
    return env.host is not None and bool(env.host.vpngate_configs)


def _proc(attr: str) -> Getter:
    def get(ef: EnrichedFlow, _env: Env) -> Any:
        p = ef.flow.process
        return None if p is None else getattr(p, attr)

    return get


def _remote(attr: str) -> Getter:
    def get(ef: EnrichedFlow, _env: Env) -> Any:
        r = ef.remote
        return None if r is None else getattr(r, attr)

    return get


def _label(attr: str) -> Getter:
    def get(ef: EnrichedFlow, _env: Env) -> Any:
        lab = ef.flow.label
        return None if lab is None else getattr(lab, attr)

    return get


def _container_name(ef: EnrichedFlow, _env: Env) -> str | None:
    """The container's name, or `netns:INODE` when only its namespace is known."""
    c = ef.flow.container
    if c is None:
        return None
    return c.name if c.name is not None else f"netns:{c.netns}"


def _flow(attr: str) -> Getter:
    def get(ef: EnrichedFlow, _env: Env) -> Any:
        return getattr(ef.flow, attr)

    return get


_S, _L, _N, _B, _I = Kind.STR, Kind.STRS, Kind.NUM, Kind.BOOL, Kind.IP

FIELDS: dict[str, Field] = {
    f.name: f
    for f in (
        Field("process.name", _S, _proc("name"), "name of the process that owns the socket"),
        Field("process.exe", _S, _proc("exe"), "its executable path"),
        Field(
            "process.cmdline",
            _S,
            lambda ef, _e: None if ef.flow.process is None else " ".join(ef.flow.process.cmdline),
            "its command line, space-joined",
        ),
        Field("process.user", _S, _proc("user"), "the user it runs as"),
        Field(
            "process.listens",
            _L,
            lambda ef, env: (
                () if ef.flow.process is None else env.listening.get(ef.flow.process.pid, ())
            ),
            "the process's non-loopback listening sockets, as tcp/443",
        ),
        Field("process.known", _B, lambda ef, _e: ef.flow.process is not None, "a process owns it"),
        Field("transport", _S, lambda ef, _e: ef.flow.key.transport, "tcp, udp, esp, ..."),
        Field("direction", _S, lambda ef, _e: ef.flow.direction, "outbound, inbound, listen"),
        Field("state", _S, _flow("state"), "socket state, e.g. ESTABLISHED, LISTEN"),
        Field("local.ip", _I, lambda ef, _e: ef.flow.key.local.ip, "local address"),
        Field("local.port", _N, lambda ef, _e: ef.flow.key.local.port, "local port"),
        Field(
            "local.loopback",
            _B,
            lambda ef, _e: ef.flow.key.local.ip.is_loopback,
            "the local address is loopback (127.0.0.0/8, ::1)",
        ),
        Field("remote.ip", _I, _remote_ip, "remote address"),
        Field("remote.port", _N, _remote_port, "remote port"),
        Field(
            "remote.family",
            _N,
            lambda ef, _e: None if ef.flow.key.remote is None else ef.flow.key.remote.ip.version,
            "4 or 6: the remote address's IP version",
        ),
        Field(
            "remote.scope",
            _S,
            lambda ef, _e: None if ef.remote is None else ef.remote.scope,
            "global, private, loopback, documentation, ...",
        ),
        Field("remote.country", _S, _remote("country"), "ISO country code of the remote address"),
        Field("remote.asn", _N, _remote("asn"), "its autonomous system number"),
        Field("remote.org", _S, _org, "the network's owner (AS organisation or RDAP name)"),
        Field("remote.jurisdiction", _L, _remote("jurisdiction"), "5 Eyes, 9 Eyes, 14 Eyes"),
        Field(
            "remote.lists",
            _L,
            lambda ef, _e: () if ef.remote is None else tuple(h.list for h in ef.remote.lists),
            "lists the address is on: vpngate, tor, ...",
        ),
        Field("remote.foreign", _B, lambda ef, env: env.policy.foreign(ef), "abroad"),
        Field("label.name", _S, _label("name"), "protocol the dissectors recognised"),
        Field("label.category", _S, _label("category"), "vpn, anonymizer, web, ..."),
        Field("label.vpn", _B, _label("vpn"), "the protocol is a VPN or anonymizer"),
        Field(
            "label.confidence",
            _S,
            lambda ef, _e: None if ef.flow.label is None else ef.flow.label.confidence,
            "guess (port alone), low, medium, high",
        ),
        Field(
            "label.evidence",
            _L,
            lambda ef, _e: (
                ()
                if ef.flow.label is None
                else tuple(f"{e.name}={e.value}" for e in ef.flow.label.evidence)
            ),
            "what the dissector saw, as name=value",
        ),
        Field("sni", _S, _flow("sni"), "TLS server name"),
        Field(
            "tls.cert.subject",
            _S,
            _cert("subject"),
            "server certificate subject (TLS <= 1.2), e.g. CN=FGT60E...,OU=FortiGate,O=Fortinet",
        ),
        Field("tls.cert.issuer", _S, _cert("issuer"), "server certificate issuer, RFC 4514"),
        Field("tls.cert.san", _L, _cert("san", ()), "server certificate SAN DNS names"),
        Field("dns_name", _S, _flow("dns_name"), "name the address was looked up as"),
        Field("http_host", _S, _flow("http_host"), "HTTP Host header"),
        Field("http_request", _S, _http_request, "HTTP request line, e.g. GET /api/iphone/"),
        Field("http_path", _S, _http_path, "HTTP request path, e.g. /api/iphone/"),
        Field("http_body", _S, _body_prefix, "first bytes of a clear HTTP response body"),
        Field("names", _L, _names, "sni, dns_name and http_host that are known"),
        Field("bytes_sent", _N, _flow("bytes_sent"), "bytes sent by this host"),
        Field("bytes_received", _N, _flow("bytes_received"), "bytes received"),
        Field("bytes_total", _N, _total, "both directions"),
        Field("packets_sent", _N, _flow("packets_sent"), "packets sent"),
        Field("packets_received", _N, _flow("packets_received"), "packets received"),
        Field("duration", _N, _duration, "seconds between first and last packet"),
        Field("policy.expected", _B, lambda ef, env: env.policy.expected(ef), "policy expects it"),
        Field(
            "policy.outside_tunnel",
            _B,
            lambda ef, env: env.policy.outside_tunnel(
                ef, env.tunnel_up or env.policy.tunnel_present(env.host)
            ),
            "left by a non-tunnel interface while [policy.tunnel]'s tunnel is required or up",
        ),
        Field(
            "tunnel.present",
            _B,
            lambda _ef, env: env.policy.tunnel_present(env.host),
            "an interface matching [policy.tunnel]'s globs exists",
        ),
        Field(
            "tunnel.ipv6",
            _B,
            lambda _ef, env: env.policy.tunnel_ipv6(env.host),
            "the tunnel carries IPv6 (the IPv6 default route is a tunnel interface's)",
        ),
        Field("interface", _S, _flow("interface"), "interface the flow left by"),
        Field(
            "egress_by",
            _S,
            _flow("egress_by"),
            "how the interface was found: capture (its first packet) or route (a route lookup)",
        ),
        Field(
            "forwarded",
            _B,
            lambda ef, _env: ef.flow.forwarded,
            "routed through this host (a container, VM or client behind it), not a local socket",
        ),
        Field("container", _S, _container_name, "the container (its name, else netns:INODE)"),
        Field(
            "container.runtime",
            _S,
            lambda ef, _env: None if ef.flow.container is None else ef.flow.container.runtime,
            "the container runtime (docker, podman, libvirt, systemd-nspawn), when known",
        ),
        Field("host.vpngate_hub", _B, _vpngate_hub, "a SoftEther config declares a VPNGATE hub"),
    )
}
"""Every field a rule condition may name."""

WINDOW_FIELDS: dict[str, str] = {
    "window.peers": "distinct remote addresses in the window",
    "window.prefixes": "distinct remote /24 (IPv4) or /48 (IPv6) networks",
    "window.countries": "distinct remote countries",
    "window.asns": "distinct remote ASNs",
    "window.flows": "flows counted in the window",
}
"""Numeric fields of a window, usable only in a case's `window.having` condition."""
