"""The flow table (pure): packets in, bidirectional flows with counters, labels and names out.

A flow is keyed by IP protocol plus the two endpoints, so both directions of a conversation
land on one entry. The side that spoke first is the initiator (TCP: the SYN sender; a capture
that starts mid-conversation falls back to "the well-known port is the server"). Each entry
counts packets and bytes each way, first/last seen, a small TCP state, and what the
dissectors found (label, SNI, HTTP host); DNS answers seen on the wire name later flows.

Time is whatever the packets say (`PacketMeta.ts`) or what the caller passes to `tick(now)`;
the table never reads a clock. Memory is bounded by the number of live flows: idle flows
leave through `tick`, and `max_flows` caps the table even when nothing goes idle.

**Counting every packet once.** Live capture listens on every interface, so a packet this host
routes or bridges is seen more than once: arriving on one interface (a container's veth, a
tunnel) and leaving by another, sometimes on a bridge and on its port too. Where the source
says which copy a frame is (`PacketMeta.pkttype`, `ifindex`: live capture and Linux cooked
capture files), a packet is counted at the first copy that carries it into the host, on the
interface it arrives by, and every later copy is recognised and not counted. Later copies
are compared with the last arriving copy that counted: every copy of a packet follows the one
that brought it in, while two arriving or two leaving copies in a row may as well be two
packets of one stream.

* a leaving copy (`PACKET_OUTGOING`) of the same flow, direction and size as that arriving
  copy, on another interface, within `COPY_WINDOW`, is that packet routed or bridged out;
  so is any leaving copy in a direction that has arrived here (when other frames came
  between the two);
* a packet arriving through a bridge is seen on the port and then on the bridge (as
  `PACKET_HOST` on both when the bridge has its port's link address, `PACKET_OTHERHOST` on
  the port when not), so an arriving copy of the same flow, direction and size as that last
  counted arriving copy, on another interface, within `COPY_WINDOW`, is the bridge's; a
  packet this host sends through a bridge leaves by the bridge and then by a port, so a
  leaving copy right after the last counted leaving copy of the same flow, direction and
  size, on another interface, is the port's;
* behind NAT, a leaving copy right after an arriving one of the same size, with one
  endpoint kept and the other changed (and, when this host's addresses are known as `local`,
  one of the two with this host's address and the other with neither), is the translated
  twin (`_nat_twin` says which is which): the untranslated flow, whose addresses are the
  sender's own (a container's socket), carries the bytes; the translated flow is marked
  (`FlowState.nat_copy`, and `forwarded`) and keeps only what was not recognised. Each
  packet is judged on its own: a wrong match costs one packet, never a whole flow.

A flow is `forwarded` when one of its packets was seen arriving and leaving, when it was
translated, or when neither of its addresses is this host's (`local`). A forwarded flow's
`interface` becomes the one its first packet left by (what the leak rules ask). Why the
arriving copy: it comes first, so nothing is counted and then taken back for routed traffic;
and it is there even when the host drops the packet instead of forwarding it, or when only the
inner interface is captured. Why the untranslated flow under NAT: its addresses are those of
the socket behind it (a container's), which is what names the process. Frames whose source
does not say which copy they are (`pkttype` None) are all counted, as before.

The dissector is injected as a function (`inspect(ctx, payload) -> PacketFacts | None`) so
this module does not import `netwatch.dissect`, its sibling layer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from netwatch.flows.serials import SerialOf, new_serial, numbered
from netwatch.model import (
    Attribution,
    CertNames,
    Direction,
    Endpoint,
    Flow,
    FlowKey,
    IPAddress,
    Label,
    PacketContext,
    PacketFacts,
    PacketMeta,
    ProcessRef,
    Transport,
)
from netwatch.model.packet import PACKET_BROADCAST, PACKET_MULTICAST, PACKET_OUTGOING

Inspector = Callable[[PacketContext, bytes], PacketFacts | None]
"""A dissector: sees a payload with its place in the flow, returns facts or None."""

SYN, FIN, RST, ACK = 0x02, 0x01, 0x04, 0x10
_NAME_CACHE = 1 << 16
COPY_WINDOW = 0.002
"""Seconds within which two copies of one packet are seen: the kernel hands a routed packet
to the capture arriving and leaving within microseconds, in the same softirq."""


def _pair_key(proto: int, src: Endpoint, dst: Endpoint) -> tuple[int, int, int, int, int]:
    """The index key of one direction: protocol, then each address as an int and port.

    Address ints are taken from `ipaddress`'s `_ip` slot (what `int()` returns, without the
    call). An IPv4 and an IPv6 address can share an int only for `::a.b.c.d`, the deprecated
    IPv4-compatible form that never appears on the wire next to its IPv4 twin.
    """
    return (proto, src.ip._ip, src.port, dst.ip._ip, dst.port)  # type: ignore[union-attr]


def _first_speaker_is_responder(pkt: PacketMeta) -> bool:
    """Guess whether the first packet seen of a flow came from its responder.

    TCP: a SYN names the initiator; a SYN+ACK names the responder. Mid-stream captures (no
    SYN seen) and UDP use ports: a well-known source port talking to an unprivileged one is a
    server answering. TCP also treats a registered port (< 32768) talking to an ephemeral one
    (>= 32768, Linux's default range) as the server, since a TCP client never picks a low port.
    """
    sport, dport = pkt.src.port, pkt.dst.port
    if pkt.ip_proto == 6:
        flags = pkt.tcp_flags
        if flags & SYN:
            return bool(flags & ACK)
        return (sport < 1024 <= dport) or (sport < 32768 <= dport)
    return sport < 1024 <= dport


@dataclass(frozen=True, slots=True)
class FlowOwner:
    """Who owns a packet flow and which side of it is this host, as attribution decided.

    `flows.attribution.attribute` decides it and the table keeps it on the flow
    (`FlowTable.own`), so a process found while its socket was open survives the socket
    closing. Frozen, so callers hand the table a new value instead of editing its flows.
    """

    process: ProcessRef | None = None
    attribution: Attribution = Attribution.UNKNOWN
    local_is_initiator: bool | None = None
    """Which side is this host (None: not known yet)."""


UNOWNED = FlowOwner()


class FlowState:
    """One live flow, mutable inside the table only; callers read it.

    `key` has the initiator as `local`. Counters named `*_fwd` run initiator -> responder.
    """

    __slots__ = (
        "_memo",
        "bytes_fwd",
        "bytes_rev",
        "dns_name",
        "done",
        "egress",
        "entered_fwd",
        "entered_rev",
        "forwarded",
        "nat_copy",
        "first_seen",
        "body_prefix",
        "http_host",
        "http_request",
        "idx_fwd",
        "idx_rev",
        "interface",
        "ip_proto",
        "key",
        "label",
        "last_seen",
        "owner",
        "pkts_fwd",
        "pkts_rev",
        "sni",
        "tcp",
        "tls_cert",
    )

    def __init__(self, key: FlowKey, ip_proto: int, ts: float) -> None:
        self.key = key
        self.ip_proto = ip_proto
        self.first_seen = self.last_seen = ts
        self.pkts_fwd = self.pkts_rev = self.bytes_fwd = self.bytes_rev = 0
        self.idx_fwd = self.idx_rev = 0
        self.tcp = 0
        """TCP flags seen: initiator's in the low byte, responder's shifted left by 8."""
        self.done = False
        self.label: Label | None = None
        self.sni: str | None = None
        self.http_host: str | None = None
        self.http_request: str | None = None
        self.body_prefix: bytes | None = None
        self.tls_cert: CertNames | None = None
        self.dns_name: str | None = None
        self.interface: str | None = None
        """The interface of the packet that opened the flow (set once: a flow keeps its
        route, and the egress interface is what `vpn.leak` asks)."""
        self.owner = UNOWNED
        """The owning process and this host's side, once attribution found them
        (`FlowTable.own`; live capture only)."""
        self.entered_fwd: int | None = None
        self.entered_rev: int | None = None
        """The interface index each direction first arrived by (None: not seen arriving)."""
        self.forwarded = False
        """The flow passes through this host (routed, bridged or translated), see the module
        docstring."""
        self.egress = False
        """`interface` is already the one a forwarded flow leaves by."""
        self.nat_copy = False
        """This flow is the translated twin of a forwarded flow (NAT): the packets
        recognised as twins are counted on that flow, not here."""
        self._memo: tuple[tuple[object, ...], Flow] | None = None
        """The last `to_flow` answer and what it was made from (see `to_flow`)."""

    @property
    def initiator(self) -> Endpoint:
        """The endpoint that spoke first."""
        return self.key.local

    @property
    def responder(self) -> Endpoint:
        """The endpoint that answered."""
        assert self.key.remote is not None  # noqa: S101  # packet flows always have both ends
        return self.key.remote

    @property
    def tcp_state(self) -> str | None:
        """A socket-like state from the flags seen (None for non-TCP flows)."""
        if self.ip_proto != 6:
            return None
        fwd, rev = self.tcp & 0xFF, self.tcp >> 8
        if (fwd | rev) & RST or (fwd & FIN and rev & FIN):
            return "CLOSED"
        if (fwd | rev) & FIN:
            return "FIN_WAIT"
        if fwd & SYN and not rev:
            return "SYN_SENT"
        if fwd & SYN and rev & SYN and not fwd & ACK:
            return "SYN_RECV"
        return "ESTABLISHED"

    def to_flow(self, initiator_is_local: bool = True, serial_of: SerialOf | None = None) -> Flow:
        """This flow as a model `Flow`, seen from the initiator or from the responder.

        The change contract (`flows.serials`): the flow's serial comes from `serial_of`
        (the engine's serial book, by the seen-from key) or, without one, is new; its
        revisions move only with the parts that changed since the last call. A flow that has
        not changed since then is the very same object again (nothing is rebuilt).
        """
        sig = (
            initiator_is_local, self.pkts_fwd, self.pkts_rev, self.bytes_fwd, self.bytes_rev,
            self.tcp, self.last_seen, self.owner, self.dns_name, self.sni,
            self.http_host, self.label, self.tls_cert, self.http_request, self.body_prefix,
            self.forwarded, self.interface,
        )  # fmt: skip
        memo = self._memo
        if memo is not None and memo[0] == sig:
            return memo[1]
        flow = self._make_flow(initiator_is_local)
        prev = memo[1] if memo is not None and memo[0][0] == initiator_is_local else None
        if prev is not None:
            serial = prev.serial
        elif serial_of is not None:
            key = flow.key
            serial = serial_of(
                key if key.transport is not Transport.OTHER else (self.ip_proto, key)
            )
        else:
            serial = new_serial()
        flow = numbered(flow, serial, prev)
        self._memo = (sig, flow)
        return flow

    def _make_flow(self, initiator_is_local: bool) -> Flow:
        key = self.key
        if initiator_is_local:
            direction = Direction.OUTBOUND
            sent, recv = (self.bytes_fwd, self.pkts_fwd), (self.bytes_rev, self.pkts_rev)
        else:
            key = FlowKey(key.transport, self.responder, key.local)
            direction = Direction.INBOUND
            sent, recv = (self.bytes_rev, self.pkts_rev), (self.bytes_fwd, self.pkts_fwd)
        return Flow(
            key=key,
            direction=direction,
            state=self.tcp_state,
            process=self.owner.process,
            attribution=self.owner.attribution,
            first_seen=self.first_seen,
            last_seen=self.last_seen,
            bytes_sent=sent[0],
            bytes_received=recv[0],
            packets_sent=sent[1],
            packets_received=recv[1],
            dns_name=self.dns_name,
            sni=self.sni,
            http_host=self.http_host,
            label=self.label,
            tls_cert=self.tls_cert,
            http_request=self.http_request,
            body_prefix=self.body_prefix,
            interface=self.interface,
            egress_by=None if self.interface is None else "capture",
            forwarded=self.forwarded,
        )


@dataclass(frozen=True, slots=True)
class TableStats:
    """Sizes and totals, for counters and the bench."""

    live: int
    created: int
    expired: int
    evicted: int
    packets: int
    dissect_errors: int
    copies: int = 0
    """Packets seen again on another interface (routed, bridged, translated), not counted."""


class FlowTable:
    """Bidirectional flows from packets; see the module docstring for the rules.

    Args:
        inspect: the dissector, called on payload-carrying packets until it says `done` or
            each direction has passed `dissect_packets` payloads.
        idle_timeout: seconds without a packet after which a UDP (or other) flow expires.
        tcp_timeout: the same for open TCP flows, which idle far longer between requests
            (keep-alive connections, tunnels) and should not split into two flows.
        closed_timeout: the same for TCP flows that saw both FINs or a RST.
        max_flows: the most live flows kept; beyond it the longest-idle tenth is expired.
        on_expire: told the initiator-first key of every flow that leaves (dissector state).
    """

    def __init__(
        self,
        inspect: Inspector | None = None,
        *,
        idle_timeout: float = 120.0,
        tcp_timeout: float = 600.0,
        closed_timeout: float = 10.0,
        max_flows: int = 200_000,
        dissect_packets: int = 64,
        on_expire: Callable[[FlowKey], None] | None = None,
    ) -> None:
        self._inspect = inspect
        self.idle_timeout = idle_timeout
        self.tcp_timeout = tcp_timeout
        self.closed_timeout = closed_timeout
        self.max_flows = max(1, max_flows)
        self.dissect_packets = dissect_packets
        self._on_expire = on_expire
        # Both orientations of every flow point at one state: one dict probe per packet.
        self._index: dict[tuple[int, int, int, int, int], tuple[FlowState, bool]] = {}
        self._flows: dict[FlowKey | tuple[int, FlowKey], FlowState] = {}
        self._names: dict[IPAddress, str] = {}
        self._evicted: list[FlowState] = []
        self._created = self._expired = self._evicted_count = 0
        self._packets = self._dissect_errors = self._copies = 0
        self.local: frozenset[IPAddress] = frozenset()
        """This host's addresses (live capture keeps them current); empty when not known, as
        for a capture file: then NAT twins are not recognised and `forwarded` needs proof."""
        self._left: PacketMeta | None = None
        self._left_state: FlowState | None = None
        """The last leaving copy that counted, and its flow: a packet this host sends through
        a bridge leaves by the bridge and then by a port."""
        self._arrived: tuple[PacketMeta, FlowState, bool, bool] | None = None
        """The last arriving copy that counted: (packet, flow, forward, matched: a translated
        copy of it was already seen)."""

    def __len__(self) -> int:
        return len(self._flows)

    # ------------------------------------------------------------------ packets

    def ingest(self, pkt: PacketMeta) -> FlowState:
        """Count a packet on its flow (creating it), run the dissector, fold what it found."""
        self._packets += 1
        src, dst = pkt.src, pkt.dst
        # Inlined `_pair_key`: hashing Endpoint objects costs ~1 us, five ints ~0.2 us.
        hit = self._index.get(
            (pkt.ip_proto, src.ip._ip, src.port, dst.ip._ip, dst.port)  # type: ignore[union-attr]
        )
        state, fwd = self._create(pkt) if hit is None else hit
        ts = pkt.ts
        if ts > state.last_seen:
            state.last_seen = ts
        if pkt.pkttype is not None and not self._counts(pkt, state, fwd):
            self._copies += 1
            return state
        payload = pkt.payload
        index = 0
        if fwd:
            state.pkts_fwd += 1
            state.bytes_fwd += pkt.length
            state.tcp |= pkt.tcp_flags
            if payload:
                index = state.idx_fwd
                state.idx_fwd = index + 1
        else:
            state.pkts_rev += 1
            state.bytes_rev += pkt.length
            state.tcp |= pkt.tcp_flags << 8
            if payload:
                index = state.idx_rev
                state.idx_rev = index + 1
        if (
            payload
            and self._inspect is not None
            and not state.done
            and index < self.dissect_packets
        ):
            self._dissect(state, PacketContext(state.key, fwd, index, ts), payload)
        return state

    def _counts(self, pkt: PacketMeta, state: FlowState, fwd: bool) -> bool:
        """Whether this copy of a packet is the one that counts (module docstring).

        Copies are compared with the last arriving copy that counted (`_arrived`) and the
        last leaving copy that counted (`_left`), never just the previous frame: every later
        copy of a packet follows the one that counted, while two frames in a row may as well
        be two packets of one stream.
        """
        arrived = self._arrived
        if pkt.pkttype == PACKET_OUTGOING:
            if arrived is not None:
                first, first_state, first_fwd, matched = arrived
                if (
                    first.length == pkt.length
                    and first.ifindex != pkt.ifindex
                    and pkt.ts - first.ts <= COPY_WINDOW
                    and first.ip_proto == pkt.ip_proto
                ):
                    if first_state is state and first_fwd is fwd:
                        self._passes(state, fwd, pkt)  # routed or bridged on its way out
                        return False
                    if first_state is not state:
                        twin = self._nat_twin(first, pkt)
                        if twin is not None:
                            if matched:  # a further copy of a packet already translated
                                return False
                            self._arrived = (first, first_state, first_fwd, True)
                            return self._translated(twin, pkt, state, fwd, first_state, first_fwd)
            if (state.entered_fwd if fwd else state.entered_rev) is not None:
                self._passes(state, fwd, pkt)  # arrived here earlier: routed on its way out
                return False
            left = self._left
            if (
                left is not None
                and self._left_state is state
                and left.ifindex != pkt.ifindex
                and left.length == pkt.length
                and pkt.ts - left.ts <= COPY_WINDOW
                and left.src == pkt.src
            ):
                return False  # sent by a bridge, and now by its port
            self._left, self._left_state = pkt, state
            return True
        if (
            arrived is not None
            and arrived[1] is state
            and arrived[2] is fwd
            and arrived[0].ifindex != pkt.ifindex
            and arrived[0].length == pkt.length
            and pkt.ts - arrived[0].ts <= COPY_WINDOW
        ):
            return False  # a bridge port's copy came first; this is the bridge's
        if pkt.pkttype == PACKET_BROADCAST or pkt.pkttype == PACKET_MULTICAST:
            # Delivered here, never routed; and other hosts' broadcasts may share a flow
            # with this host's own (DHCP: 0.0.0.0:68 -> 255.255.255.255:67 from everyone).
            self._arrived = (pkt, state, fwd, False)
            return True
        if fwd:
            if state.entered_fwd is None:
                state.entered_fwd = pkt.ifindex
                self._judge(state, pkt)
        elif state.entered_rev is None:
            state.entered_rev = pkt.ifindex
            self._judge(state, pkt)
        self._arrived = (pkt, state, fwd, False)
        return True

    def _judge(self, state: FlowState, pkt: PacketMeta) -> None:
        """A direction's first arriving copy: neither end this host's means passing through.

        Once per direction, not per packet: the answer is the addresses', and hashing two
        addresses costs as much as the rest of counting a packet.
        """
        local = self.local
        if (
            local
            and not state.forwarded
            and pkt.src.ip not in local
            and pkt.dst.ip not in local
            and not pkt.dst.ip.is_multicast
            and not pkt.src.ip.is_unspecified
        ):
            state.forwarded = True

    def _nat_twin(self, arrived: PacketMeta, left: PacketMeta) -> bool | None:
        """Whether `left` is `arrived` translated, and which of the two is untranslated:
        True for `arrived`, False for `left`; None when they are not one packet.

        Linux rewrites a source on the way out (SNAT, and a DNAT reply un-translated) and a
        destination on the way in (DNAT, and a SNAT reply un-translated), so when the source
        changed the arriving copy is the inner one, and when the destination changed the
        leaving copy is. With this host's addresses known (`local`), the inner copy must have
        neither of them and the outer one must have one.
        """
        src_kept, dst_kept = arrived.src == left.src, arrived.dst == left.dst
        if src_kept == dst_kept:
            return None
        inner, outer = (arrived, left) if dst_kept else (left, arrived)
        local = self.local
        if local and (
            inner.src.ip in local
            or inner.dst.ip in local
            or (outer.src.ip not in local and outer.dst.ip not in local)
        ):
            return None
        return dst_kept

    def _translated(
        self,
        arrived_untranslated: bool,
        pkt: PacketMeta,
        state: FlowState,
        fwd: bool,
        prev_state: FlowState,
        prev_fwd: bool,
    ) -> bool:
        """Keep a NAT pair's bytes on the untranslated flow; mark the translated one."""
        if arrived_untranslated:  # counted on arrival (e.g. a container's, before SNAT)
            prev_state.forwarded = state.forwarded = state.nat_copy = True
            if prev_fwd and not prev_state.egress:
                prev_state.interface, prev_state.egress = pkt.interface, True
            return False
        # It arrived translated (a reply before un-SNAT) and was counted there: move it.
        if prev_fwd:
            prev_state.pkts_fwd -= 1
            prev_state.bytes_fwd -= pkt.length
        else:
            prev_state.pkts_rev -= 1
            prev_state.bytes_rev -= pkt.length
        prev_state.forwarded = prev_state.nat_copy = state.forwarded = True
        if fwd and not state.egress:
            state.interface, state.egress = pkt.interface, True
        return True

    @staticmethod
    def _passes(state: FlowState, fwd: bool, pkt: PacketMeta) -> None:
        """A packet of `state` was seen arriving and now leaving: the flow is forwarded, and
        leaves by this copy's interface."""
        state.forwarded = True
        if fwd and not state.egress:
            state.interface, state.egress = pkt.interface, True

    def _create(self, pkt: PacketMeta) -> tuple[FlowState, bool]:
        src, dst = pkt.src, pkt.dst
        fwd = not _first_speaker_is_responder(pkt)
        if not fwd:
            src, dst = dst, src
        key = FlowKey(pkt.transport, src, dst)
        state = FlowState(key, pkt.ip_proto, pkt.ts)
        state.dns_name = self._names.get(dst.ip) or self._names.get(src.ip)
        state.interface = pkt.interface
        proto = pkt.ip_proto
        self._index[_pair_key(proto, src, dst)] = (state, True)
        self._index[_pair_key(proto, dst, src)] = (state, False)
        self._flows[self._flow_id(state)] = state
        self._created += 1
        if len(self._flows) > self.max_flows:
            self._evict()
        return state, fwd

    @staticmethod
    def _flow_id(state: FlowState) -> FlowKey | tuple[int, FlowKey]:
        # Transport OTHER covers many IP protocols; keep them apart.
        if state.key.transport is Transport.OTHER:
            return (state.ip_proto, state.key)
        return state.key

    def _dissect(self, state: FlowState, ctx: PacketContext, payload: bytes) -> None:
        assert self._inspect is not None  # noqa: S101  # checked by the caller
        try:
            facts = self._inspect(ctx, payload)
        except Exception:  # a dissector bug must not stop a capture; count it and move on
            self._dissect_errors += 1
            state.done = True
            return
        if facts is not None:
            self.fold(state, facts)

    def fold(self, state: FlowState, facts: PacketFacts) -> None:
        """Merge facts into a flow: the most confident label wins; names keep the first seen.

        A label as confident as the flow's that adds evidence to all of it replaces it (the
        dissector refines: WireGuard proven, then Tailscale's DISCO on the same flow).
        """
        label = facts.label
        if label is not None:
            old = state.label
            same = old is not None and label.confidence.rank == old.confidence.rank
            if (
                old is None
                or label.confidence.rank > old.confidence.rank
                or (same and label.vpn and not old.vpn)
                or (same and label.vpn == old.vpn and set(old.evidence) < set(label.evidence))
            ):
                state.label = label
        if facts.sni and state.sni is None:
            state.sni = facts.sni
        if facts.http_host and state.http_host is None:
            state.http_host = facts.http_host
        if facts.http_request and state.http_request is None:
            state.http_request = facts.http_request
        if facts.body_prefix is not None and state.body_prefix is None:
            state.body_prefix = facts.body_prefix
        if facts.tls_cert is not None and state.tls_cert is None:
            state.tls_cert = facts.tls_cert
        for name, ip in facts.dns_answers:
            self.remember_name(ip, name)
        if facts.done:
            state.done = True

    @staticmethod
    def own(state: FlowState, owner: FlowOwner) -> None:
        """Keep what attribution decided about a flow (`flows.attribution.attribute`)."""
        state.owner = owner

    def remember_name(self, ip: IPAddress, name: str) -> None:
        """Note that `name` resolved to `ip`, so flows to `ip` get `dns_name` (bounded)."""
        names = self._names
        if ip not in names and len(names) >= _NAME_CACHE:
            del names[next(iter(names))]
        names[ip] = name

    # ------------------------------------------------------------------ time

    def tick(self, now: float) -> list[FlowState]:
        """Remove and return the flows idle past their timeout at `now` (and any evicted)."""
        out, self._evicted = self._evicted, []
        idle, closed = now - self.idle_timeout, now - self.closed_timeout
        tcp_idle = now - self.tcp_timeout
        for fid, state in list(self._flows.items()):
            last = state.last_seen
            if state.ip_proto == 6:
                gone = last < tcp_idle or (last < closed and state.tcp_state == "CLOSED")
            else:
                gone = last < idle
            if gone:
                del self._flows[fid]
                self._forget(state)
                out.append(state)
        self._expired += len(out)
        return out

    def _evict(self) -> None:
        ordered = sorted(self._flows.items(), key=lambda item: item[1].last_seen)
        for fid, state in ordered[: max(1, len(ordered) // 10)]:
            del self._flows[fid]
            self._forget(state)
            self._evicted.append(state)
            self._evicted_count += 1

    def _forget(self, state: FlowState) -> None:
        src, dst = state.key.local, state.responder
        self._index.pop(_pair_key(state.ip_proto, src, dst), None)
        self._index.pop(_pair_key(state.ip_proto, dst, src), None)
        if state.dns_name is None:
            state.dns_name = self._names.get(dst.ip)
        if self._on_expire is not None:
            self._on_expire(state.key)

    def live(self) -> list[FlowState]:
        """The flows currently in the table (names filled in from DNS seen since)."""
        names = self._names
        for state in self._flows.values():
            if state.dns_name is None:
                state.dns_name = names.get(state.responder.ip)
        return list(self._flows.values())

    def drain(self) -> list[FlowState]:
        """Remove and return every flow (end of a capture file), evicted ones first."""
        out, self._evicted = self._evicted, []
        for state in self._flows.values():
            self._forget(state)
            out.append(state)
        self._expired += len(self._flows)
        self._flows.clear()
        self._index.clear()
        return out

    def stats(self) -> TableStats:
        """Counts so far."""
        return TableStats(
            live=len(self._flows),
            created=self._created,
            expired=self._expired,
            evicted=self._evicted_count,
            packets=self._packets,
            dissect_errors=self._dissect_errors,
            copies=self._copies,
        )
