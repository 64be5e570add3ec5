"""Flows and the things they are made of: endpoints, keys, processes, labels, evidence.

Flows are keyed local/remote (not src/dst) so both directions of a conversation share one key;
`Flow.direction` says who initiated. IPv4-mapped IPv6 addresses are unmapped on construction,
so `::ffff:1.2.3.4` and `1.2.3.4` are the same endpoint everywhere.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from enum import StrEnum

from netwatch.model.construct import slotted_init

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_ip(value: str | IPAddress) -> IPAddress:
    """Parse an address and unmap `::ffff:a.b.c.d` to IPv4; raises ValueError on garbage."""
    addr = value if not isinstance(value, str) else ipaddress.ip_address(value.strip())
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


class Transport(StrEnum):
    """The transport of a flow; IP protocol numbers map here via `from_ip_proto`."""

    TCP = "tcp"
    UDP = "udp"
    ICMP = "icmp"
    ICMPV6 = "icmpv6"
    ESP = "esp"
    AH = "ah"
    GRE = "gre"
    SCTP = "sctp"
    RAW = "raw"
    PACKET = "packet"
    OTHER = "other"

    @classmethod
    def from_ip_proto(cls, number: int) -> Transport:
        """Map an IP protocol number to a transport (unknown numbers give OTHER)."""
        return _BY_PROTO.get(number, cls.OTHER)


_BY_PROTO = {
    6: Transport.TCP,
    17: Transport.UDP,
    1: Transport.ICMP,
    58: Transport.ICMPV6,
    50: Transport.ESP,
    51: Transport.AH,
    47: Transport.GRE,
    132: Transport.SCTP,
}


class Direction(StrEnum):
    """Who initiated: this host (outbound), the peer (inbound), nobody yet (listen)."""

    OUTBOUND = "outbound"
    INBOUND = "inbound"
    LISTEN = "listen"
    UNKNOWN = "unknown"


class Attribution(StrEnum):
    """How the owning process was found."""

    SOCKET = "socket"
    """The socket table listed this endpoint with its process in this sample."""
    CACHED = "cached"
    """The socket was gone, but an earlier sample had attributed this flow."""
    CONNECT = "connect"
    """Found as the connection started (its first packet); no sample listed its socket."""
    GUESSED = "guessed"
    """Paired with the one socket that could carry it (a raw, ping or packet socket of the
    right protocol or interface), not by an exact address match: probably right, not proven."""
    UNKNOWN = "unknown"
    """No process could be found (other user without privileges, raw traffic, pcap)."""


class Confidence(StrEnum):
    """How sure a label or rule is (each detection fact in docs/architecture.md is rated so).

    The levels follow the kind of evidence: a protocol's own signature is `high`, a
    certificate or SNI naming the service `medium`, an address on a list `low`, and a port
    alone (anyone can run anything on port 992) only a `guess`.
    """

    GUESS = "guess"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"

    @property
    def rank(self) -> int:
        """Return 0 to 3 for guess, low, medium, high, to compare confidences."""
        return _CONFIDENCE_ORDER.index(self.value)


_CONFIDENCE_ORDER = ("guess", "low", "medium", "high")


@slotted_init
@dataclass(frozen=True, slots=True)
class Endpoint:
    """One side of a flow: address and port (0 when the transport has no ports)."""

    ip: IPAddress
    port: int = 0
    _hash: int = field(init=False, repr=False, compare=False)
    """Computed once: `ipaddress` objects hash through `hex()`, and endpoints and flow keys
    are hashed for every socket on every tick (`bench/daemon.py` found it a third of a tick)."""

    def __post_init__(self) -> None:
        """Unmap IPv4-mapped IPv6 so dual-stack sockets compare equal to IPv4 ones."""
        unmapped = parse_ip(self.ip)
        if unmapped is not self.ip:
            object.__setattr__(self, "ip", unmapped)
        object.__setattr__(self, "_hash", hash((self.ip, self.port)))

    def __hash__(self) -> int:
        return self._hash

    def __reduce__(self) -> tuple[type[Endpoint], tuple[IPAddress, int]]:
        """Rebuilt by the constructor: string hashes differ between processes."""
        return (Endpoint, (self.ip, self.port))

    def __str__(self) -> str:
        if self.ip.version == 6:
            return f"[{self.ip}]:{self.port}"
        return f"{self.ip}:{self.port}"


@slotted_init
@dataclass(frozen=True, slots=True)
class FlowKey:
    """Transport plus the two endpoints; `remote` is None for listening sockets."""

    transport: Transport
    local: Endpoint
    remote: Endpoint | None
    _hash: int = field(init=False, repr=False, compare=False)
    """Computed once, as for `Endpoint`."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash((self.transport, self.local, self.remote)))

    def __hash__(self) -> int:
        return self._hash

    def __reduce__(self) -> tuple[type[FlowKey], tuple[Transport, Endpoint, Endpoint | None]]:
        """Rebuilt by the constructor: string hashes differ between processes."""
        return (FlowKey, (self.transport, self.local, self.remote))


@dataclass(frozen=True, slots=True)
class ProcessRef:
    """The process that owns a socket; (pid, create_time) identifies it across PID reuse."""

    pid: int
    create_time: float
    name: str
    exe: str | None = None
    cmdline: tuple[str, ...] = ()
    user: str | None = None
    ppid: int | None = None


@dataclass(frozen=True, slots=True)
class Evidence:
    """One thing that matched, with its value: `Evidence("sni", "DDNS")`."""

    name: str
    value: str


@dataclass(frozen=True, slots=True)
class CertNames:
    """The names in a server's leaf certificate, as sent in clear before TLS 1.3.

    `subject` and `issuer` are RFC 4514 strings (`CN=FGT60E...,OU=FortiGate,O=Fortinet`,
    most specific attribute first); `san` holds the subject alternative DNS names, lowercased.
    A VPN concentrator that names itself nowhere else (no telling SNI) often does here.
    """

    subject: str
    issuer: str
    san: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Container:
    """The network namespace a flow's socket lives in, when it is not the host's own.

    `netns` is the namespace's inode (`/proc/<pid>/ns/net`), which identifies it on this
    boot; `name` and `runtime` are filled when a runtime label or the cgroup path gives them
    (`docker`, `podman`, `libvirt`, `systemd-nspawn`), else None.
    """

    netns: int
    name: str | None = None
    runtime: str | None = None

    def summary(self) -> str:
        """One line for tables and detail screens: `web (docker)`, or `netns:4026532533`."""
        name = self.name or f"netns:{self.netns}"
        return f"{name} ({self.runtime})" if self.runtime else name


@dataclass(frozen=True, slots=True)
class Label:
    """What a flow is, as the dissectors decided: application, category, VPN or not.

    `name` is the protocol or application (`openvpn`, `wireguard`, `softether`, `tls`, `dns`,
    `tor`, ...); `category` is `vpn`, `anonymizer`, `web`, `network`, ...; `vpn` is true for VPN
    and anonymizer protocols, which is what the rules and the UI badge key on.
    """

    name: str
    category: str
    vpn: bool = False
    confidence: Confidence = Confidence.MEDIUM
    evidence: tuple[Evidence, ...] = ()

    @property
    def evidence_kinds(self) -> tuple[str, ...]:
        """The kinds of evidence, once each in order (`sni`, `opcode`, ...): what a label
        rests on, short enough for a table cell where the values would not fit."""
        return tuple(dict.fromkeys(e.name for e in self.evidence))

    def summary(self) -> str:
        """One line for tables and alert lists: `openvpn (high: opcode, session_id)`."""
        kinds = ", ".join(self.evidence_kinds)
        return f"{self.name} ({self.confidence}{': ' + kinds if kinds else ''})"


@slotted_init
@dataclass(frozen=True, slots=True)
class Flow:
    """One conversation as seen from this host, with who owns it and how much it moved.

    Byte and packet counts are from the local side's view (sent = local to remote); `None`
    means the source could not tell (e.g. UDP sockets without capture).
    """

    key: FlowKey
    direction: Direction
    state: str | None = None
    process: ProcessRef | None = None
    attribution: Attribution = Attribution.UNKNOWN
    first_seen: float | None = None
    last_seen: float | None = None
    bytes_sent: int | None = None
    bytes_received: int | None = None
    packets_sent: int | None = None
    packets_received: int | None = None
    dns_name: str | None = None
    sni: str | None = None
    http_host: str | None = None
    label: Label | None = None
    tls_cert: CertNames | None = None
    """The server's leaf certificate names (TLS 1.2 and older; TLS 1.3 encrypts them)."""
    http_request: str | None = None
    """The first clear HTTP request line, e.g. `GET /api/iphone/ HTTP/1.1` (rule fields
    `http_request`, `http_path`)."""
    body_prefix: bytes | None = None
    """The first bytes of the first clear HTTP response body, e.g. `*vpn_servers` (rule
    field `http_body`)."""
    interface: str | None = None
    """The network interface the flow's packets were captured on (None without capture)."""
    egress_by: str | None = None
    """How `interface` was found: `capture` (the captured packet's interface); a route lookup
    would say `route`. None when no interface is known."""
    forwarded: bool = False
    """The packets were routed through this host (arrived on one interface, left by another),
    not sent or received by a local socket: counted once, at the interface they left by."""
    container: Container | None = None
    """The network namespace (container) whose socket this is; None for the host's own."""
    serial: int = field(default=0, compare=False)
    """The change contract (docs/architecture.md, section 4): a number for this conversation
    that stays the same for as long as the engine that made it sees it (0: not numbered, a
    flow built by hand or read from a file). Not part of equality: two flows with the same
    values are equal whatever their numbers."""
    rev_facts: int = field(default=0, compare=False)
    """Moves (by at least one) whenever anything but the traffic changes: state, process,
    attribution, names, label, certificate, interface."""
    rev_traffic: int = field(default=0, compare=False)
    """Moves whenever the traffic changes: byte and packet counters, `last_seen`."""
