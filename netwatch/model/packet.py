"""Packets as the sources hand them to the flow table and the dissectors, and what dissectors learn.

`PacketMeta` is what `sources.capture` and `sources.pcapfile` yield (headers parsed, payload
kept for the dissectors). `PacketContext` is how the pipeline tells a dissector where a packet
sits in its flow. `PacketFacts` is what a dissector found; the flow table folds facts into flows.
"""

from __future__ import annotations

from dataclasses import dataclass

from netwatch.model.construct import slotted_init
from netwatch.model.flow import CertNames, Endpoint, FlowKey, IPAddress, Label, Transport


@slotted_init
@dataclass(frozen=True, slots=True)
class PacketMeta:
    """One IP packet: when, which transport, both endpoints, size on the wire, and payload."""

    ts: float
    transport: Transport
    src: Endpoint
    dst: Endpoint
    length: int
    """Bytes of the IP packet (header included), as counted for flow byte totals."""
    payload: bytes = b""
    """The transport payload (TCP/UDP data; the whole IP payload for ESP, GRE, ...)."""
    tcp_flags: int = 0
    ip_proto: int = 0
    interface: str | None = None
    pkttype: int | None = None
    """Which copy of the packet this is, as Linux's packet socket says (`sll_pkttype`: one
    of the `PACKET_*` numbers below): arriving for this host, leaving it, or passing by.
    None when the source does not say (most capture files), and then every copy counts."""
    ifindex: int = 0
    """The index of the interface the copy was seen on (0: not known)."""


PACKET_HOST = 0
"""A copy arriving, addressed to this host's link address (for this host, or to be routed)."""
PACKET_BROADCAST = 1
PACKET_MULTICAST = 2
PACKET_OTHERHOST = 3
"""A copy arriving for another link address (a bridge port's view, or promiscuous mode)."""
PACKET_OUTGOING = 4
"""A copy leaving by an interface (sent here, routed, or bridged out)."""


@slotted_init
@dataclass(frozen=True, slots=True)
class PacketContext:
    """Where a packet sits in its flow: the flow (initiator as `local`), direction, index."""

    flow: FlowKey
    """The flow with the initiator as `local` and the responder as `remote`."""
    from_initiator: bool
    index: int
    """0-based count of payload-carrying packets seen before this one in the same direction."""
    ts: float = 0.0


@dataclass(frozen=True, slots=True)
class PacketFacts:
    """What a dissector learned from one packet. Empty fields mean "nothing new"."""

    label: Label | None = None
    sni: str | None = None
    alpn: tuple[str, ...] = ()
    http_host: str | None = None
    http_request: str | None = None
    """The HTTP request line, e.g. `GET /api/iphone/ HTTP/1.1`."""
    dns_query: str | None = None
    dns_answers: tuple[tuple[str, IPAddress], ...] = ()
    """(name, address) pairs from A/AAAA answers, so later flows to that address get a name."""
    body_prefix: bytes | None = None
    """The first bytes of a cleartext HTTP response body (e.g. `*vpn_servers`)."""
    tls_cert: CertNames | None = None
    """Names in the server's leaf certificate (TLS 1.2 and older send it in clear)."""
    done: bool = False
    """The dissector needs no more packets of this flow."""
