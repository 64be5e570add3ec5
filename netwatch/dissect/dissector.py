"""The dissector the pipeline calls: one packet payload in, `PacketFacts` out.

`Dissector.inspect` routes by transport and ports to the protocol modules and keeps a bounded
LRU of per-flow state for checks that need several packets or both directions. It stays cheap:
only the first `max_packets` payload packets per direction are looked at (DNS flows a few more,
since one socket may ask many questions; a TLS server's a few more while its certificate chain
is joined, at most 16 KB), a flow whose answer is known returns `done=True`, and
unknown transports are dismissed at once. Labels never get weaker during a flow: a VPN label
beats a plain one, and higher confidence beats lower.

WireGuard is looked for in the first `_WG_TRIES` datagrams of each direction of a UDP flow
that nothing else has claimed, not only the first: Tailscale sends its DISCO pings on the
socket before WireGuard's handshake, and obfuscating clients send junk first. A flow that
carried DISCO keeps being read up to `max_packets`, and its WireGuard evidence joins the
`tailscale` label.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import replace
from typing import TypeVar

from netwatch.dissect import (
    anyconnect,
    certificate,
    http,
    ipsec,
    labels,
    openvpn,
    quic,
    softether,
    tailscale,
    tls,
    tunnels,
    ultrasurf,
    verdicts,
)
from netwatch.dissect.dns import DnsMessage, parse_dns
from netwatch.dissect.state import FlowState, FlowStates, append_bounded
from netwatch.dissect.wireguard import WireGuardTracker, message_type
from netwatch.model import (
    Confidence,
    FlowKey,
    IPAddress,
    Label,
    PacketContext,
    PacketFacts,
    Transport,
)

DNS_PORTS = frozenset({53, 5353, 5355})
_DNS_NAMES = {53: "dns", 5353: "mdns", 5355: "llmnr"}
_DNS_LABELS = {name: labels.plain(name, "network", labels.HIGH) for name in _DNS_NAMES.values()}
_MAX_DNS_PACKETS = 64
_QUIC_TRIES = 4
_WG_TRIES = 4
"""Datagrams per direction in which a WireGuard message may still open the tracker."""
_MAX_CERT_PACKETS = 16
"""Server segments read for a certificate (16 KB at a 1 KB MSS; the leaf comes first)."""
_PEER_MEMORY = 1024
_V = TypeVar("_V")
_DONE = PacketFacts(done=True)


class Dissector:
    """Labels flows from their payloads; one instance per pipeline (it holds flow state)."""

    def __init__(self, max_flows: int = 65536, max_packets: int = 8) -> None:
        self._states = FlowStates(max_flows)
        self._max_packets = max_packets
        self._tinc_peers: OrderedDict[tuple[str, str, int], None] = OrderedDict()
        self._softether_peers: OrderedDict[tuple[str, str, int], Confidence] = OrderedDict()
        """Host pairs with a SoftEther TLS flow, and how sure that label was."""
        self._cstp_peers: OrderedDict[tuple[str, str, int], None] = OrderedDict()
        self._forti_peers: OrderedDict[tuple[str, str, int], None] = OrderedDict()
        """Host pairs and port of a TLS flow whose certificate is a FortiGate's (FORTI-1)."""

    def forget(self, key: FlowKey) -> None:
        """Drop what is remembered about a flow (called when the flow table expires it)."""
        self._states.forget(key)

    @property
    def tracked_flows(self) -> int:
        """How many flows have dissector state right now (bounded by `max_flows`)."""
        return len(self._states)

    def inspect(self, ctx: PacketContext, payload: bytes) -> PacketFacts | None:
        """Return what this payload says about its flow, or None when it says nothing new."""
        if not payload:
            return None
        transport = ctx.flow.transport
        if ctx.index >= self._max_packets:
            if ctx.index < _MAX_DNS_PACKETS and _dns_port(ctx.flow) is not None:
                pass  # one DNS socket may ask many questions: keep reading answers
            elif (
                ctx.index < _MAX_CERT_PACKETS
                and not ctx.from_initiator
                and self._states.waits_for_certificate(ctx.flow)
            ):
                pass  # a certificate chain spans several segments: keep joining them
            elif ctx.index == self._max_packets:
                return _DONE  # tell the flow table to stop calling for this flow
            else:
                return None
        if transport is Transport.TCP or transport is Transport.UDP:
            if ctx.flow.remote is None:
                return None
            state = self._states.get(ctx.flow)
            if state.done:
                return None
            if transport is Transport.TCP:
                facts = self._tcp(ctx, state, payload)
            else:
                facts = self._udp(ctx, state, payload)
            if (facts is None or not facts.done) and _nothing_pending(state, ctx):
                state.done = True
                return PacketFacts(label=None if facts is None else facts.label, done=True)
            return facts
        if transport is Transport.ESP:
            return PacketFacts(label=ipsec.esp_label(payload), done=True)
        if transport is Transport.AH:
            return PacketFacts(label=ipsec.ah_label(payload), done=True)
        if transport is Transport.GRE:
            return PacketFacts(label=tunnels.gre_label(payload), done=True)
        return _DONE

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _better(state: FlowState, label: Label | None) -> Label | None:
        """Return `label` if it improves on what was reported for this flow, else None."""
        if label is None or not labels.improves(label, state.best):
            return None
        state.best = label
        return label

    def _facts(
        self, state: FlowState, label: Label | None, done: bool = False
    ) -> PacketFacts | None:
        """Build facts with only an improving label (None when there is nothing new)."""
        if done:
            state.done = True
        better = self._better(state, label)
        if better is None and not done:
            return None
        return PacketFacts(label=better, done=done)

    # ------------------------------------------------------------------ TCP

    def _tcp(self, ctx: PacketContext, state: FlowState, payload: bytes) -> PacketFacts | None:
        if ctx.from_initiator:
            if state.watermark is not None:
                return self._watermark(ctx.flow, state, state.watermark, payload)
            if state.client_wait:
                return self._tcp_client(ctx, state, append_bounded(state.client_buf, payload))
            if ctx.index == 0 or (state.tunnel and tls.looks_like_handshake(payload)):
                return self._tcp_client(ctx, state, payload)
        elif state.cert_wait:
            return self._certificate(state, payload, ctx.flow)
        elif state.server_wait or (ctx.index == 0 and state.http):
            facts = self._http_response(state, append_bounded(state.server_buf, payload))
            state.server_buf = state.server_buf if state.server_wait else b""
            return facts
        if state.ovpn is not None and not state.ovpn.dead:
            return self._facts(state, state.ovpn.feed(ctx.from_initiator, ctx.index, payload))
        if ctx.index == 0:
            return self._tcp_first(ctx, state, payload)
        return None

    def _tcp_client(self, ctx: PacketContext, state: FlowState, data: bytes) -> PacketFacts | None:
        """The initiator's first bytes: TLS, HTTP, then the clear VPN signatures."""
        if tls.looks_like_handshake(data):
            hello = tls.parse_client_hello_records(data)
            if hello is tls.NEED_MORE:
                state.client_wait = True
                state.client_buf = data
                return None
            state.client_wait = False
            state.client_buf = b""  # bytes are kept only while a parser waits
            if isinstance(hello, tls.ClientHello):
                facts = self._hello_facts(state, hello, "tls", ctx.flow)
                if verdicts.softether_candidate(
                    hello.sni, hello.alpn, _rport(ctx.flow), _rip(ctx.flow)
                ):
                    facts = self._watch_records(ctx.flow, state, facts, data)
                return facts
            return self._tcp_first(ctx, state, data)
        if http.looks_like_request(data):
            request = http.parse_request(data)
            if request is None:
                state.client_wait = len(data) < 4096
                state.client_buf = data if state.client_wait else b""
                return None
            state.client_wait = False
            state.client_buf = b""  # bytes are kept only while a parser waits
            # After CONNECT the proxy's "200" has no body; TLS to the target follows instead.
            state.tunnel = request.method == "CONNECT"
            state.http = not state.tunnel
            if anyconnect.offers_dtls(request.cstp_headers):
                self._remember(self._cstp_peers, _peer_key(ctx.flow, 0), None)
            return PacketFacts(
                label=self._better(state, verdicts.http_label(request)),
                http_host=request.host,
                http_request=request.line[:512],
            )
        return self._tcp_first(ctx, state, data)

    def _tcp_first(self, ctx: PacketContext, state: FlowState, data: bytes) -> PacketFacts | None:
        """First payload of a direction that is neither TLS nor HTTP."""
        if ctx.from_initiator:
            label = softether.azure_label(data) or tunnels.pptp_label(data) or ultrasurf.label(data)
            if label is not None:
                return self._facts(state, label, done=True)
        if data.startswith(b"SSH-"):
            banner = data.split(b"\r\n", 1)[0].split(b"\n", 1)[0][:64].decode("ascii", "replace")
            return self._facts(
                state, labels.plain("ssh", "network", labels.HIGH, ("banner", banner)), done=True
            )
        if not ctx.from_initiator and tunnels.pptp_label(data) is not None:
            return self._facts(state, tunnels.pptp_label(data), done=True)
        if tunnels.tinc_id(data):
            return self._tinc(ctx, state)
        if _dns_port(ctx.flow) == 53 and len(data) > 14:
            message = parse_dns(data[2:])
            if message is not None:
                return self._dns_facts(state, message, "dns")
        if openvpn.frame(data, tcp=True) is not None:
            state.ovpn = openvpn.OpenVpnTracker(tcp=True)
            return self._facts(state, state.ovpn.feed(ctx.from_initiator, 0, data))
        return None

    def _watch_records(
        self, flow: FlowKey, state: FlowState, hello: PacketFacts, data: bytes
    ) -> PacketFacts:
        """Keep reading a SoftEther-shaped flow: its client's next records may show the upload.

        `data` is what carried the ClientHello; records after it in those bytes count too.
        """
        state.done = False
        state.watermark = tls.RecordWalker()
        state.app_records = 0
        more = self._watermark(flow, state, state.watermark, data)
        if more is None:
            return replace(hello, done=False)
        return replace(hello, label=more.label or hello.label, done=more.done)

    def _watermark(
        self, flow: FlowKey, state: FlowState, walker: tls.RecordWalker, payload: bytes
    ) -> PacketFacts | None:
        """Look for the watermark-sized record among the client's first application records."""
        records = walker.feed(payload)
        for ctype, length in records or ():
            if ctype != 23:
                continue
            state.app_records += 1
            if state.app_records > softether.WATERMARK_RECORDS:
                break
            if softether.watermark_sized(length):
                state.watermark = None
                seen = state.best.evidence if state.best is not None else ()
                sni = next((e.value for e in seen if e.name == "sni"), "")
                label = verdicts.softether_watermark(sni, _rport(flow), length)
                self._remember(self._softether_peers, _peer_key(flow, 0), label.confidence)
                return self._facts(state, label, done=True)
        if records is None or state.app_records >= softether.WATERMARK_RECORDS:
            state.watermark = None
            return self._facts(state, None, done=True)
        return None

    def _http_response(self, state: FlowState, data: bytes) -> PacketFacts | None:
        state.server_buf = data
        if not http.looks_like_response(data):
            state.server_wait = state.http = False
            return None
        body = http.response_body_prefix(data)
        if body is None:
            state.server_wait = len(data) < 8192
            return None
        state.server_wait = False
        label = None
        if body.startswith(b"*vpn_servers"):
            label = labels.vpn("vpngate", labels.HIGH, ("body_prefix", "*vpn_servers"))
        return PacketFacts(label=self._better(state, label), body_prefix=body, done=True)

    def _certificate(self, state: FlowState, payload: bytes, flow: FlowKey) -> PacketFacts | None:
        """The server's side of a TLS handshake: join segments until the leaf certificate."""
        data = (state.server_buf + payload)[: certificate.MAX_SERVER_BYTES]
        found = certificate.server_certificate(data)
        if found is tls.NEED_MORE:
            state.server_buf = data
            return None
        state.cert_wait = False
        state.server_buf = b""  # bytes are kept only while a parser waits
        # The client's side may still be watched (SoftEther's upload follows the handshake):
        # the flow is done only when that watch is over too.
        done = state.watermark is None
        if not isinstance(found, certificate.LeafCertificate):
            return self._facts(state, None, done=done)  # TLS 1.3, resumption, not TLS
        state.done = done
        named = verdicts.cert_label(found, state.sni)
        if named is not None and named.name == "fortinet":
            self._remember(self._forti_peers, _peer_key(flow, _rport(flow)), None)
        label = self._better(state, named)
        return PacketFacts(label=label, tls_cert=found.names, done=done)

    def _tinc(self, ctx: PacketContext, state: FlowState) -> PacketFacts | None:
        state.tinc_sides.add(ctx.from_initiator)
        both = len(state.tinc_sides) == 2
        if both:
            self._remember(self._tinc_peers, _peer_key(ctx.flow, _rport(ctx.flow)), None)
        confidence = labels.HIGH if both else labels.MEDIUM
        label = labels.vpn("tinc", confidence, ("tinc_id", "protocol 17"))
        return self._facts(state, label, done=both)

    # ------------------------------------------------------------------ UDP

    def _udp(self, ctx: PacketContext, state: FlowState, payload: bytes) -> PacketFacts | None:
        flow = ctx.flow
        ports = (flow.local.port, _rport(flow))
        dns_port = _dns_port(flow)
        if dns_port is not None:
            message = parse_dns(payload)
            if message is not None:
                return self._dns_facts(state, message, _DNS_NAMES[dns_port])
        sender = tailscale.disco_sender(payload)  # before the trackers: DISCO interleaves
        if sender is not None:
            return self._disco(state, sender)
        if state.wg is not None and not state.wg.dead:
            return self._wireguard(ctx, state, payload)
        if state.ovpn is not None and not state.ovpn.dead:
            return self._facts(state, state.ovpn.feed(ctx.from_initiator, ctx.index, payload))
        if state.quic_crypto is not None:
            return self._quic(ctx, state, payload)
        if ipsec.NATT_PORT in ports or 500 in ports:
            label = ipsec.udp_label(payload, ports)
            if label is not None:
                return self._facts(state, label, done=label.confidence is labels.HIGH)
        if softether.NATT_PORT in ports:  # NAT-T flows open with 1-byte probes: look further
            label = softether.natt_label(payload)
            if label is not None:
                return self._facts(state, label, done=True)
        if tunnels.L2TP_PORT in ports:
            label = tunnels.l2tp_label(payload)
            if label is not None:
                return self._facts(state, label, done=label.confidence is labels.HIGH)
        if ctx.index != 0:
            return self._udp_later(ctx, state, payload)
        return self._udp_first(ctx, state, payload, ports)

    def _udp_later(self, ctx: PacketContext, state: FlowState, data: bytes) -> PacketFacts | None:
        """A later datagram of a flow nothing has claimed: WireGuard may start here."""
        if state.best is not None and not state.disco:
            return None
        if ctx.index >= _WG_TRIES and not state.disco:
            return None
        if not message_type(data):
            return None
        return self._wireguard(ctx, state, data)

    def _wireguard(self, ctx: PacketContext, state: FlowState, data: bytes) -> PacketFacts | None:
        """Feed the WireGuard tracker (opened on first use); with DISCO it is Tailscale's."""
        if state.wg is None or state.wg.dead:
            state.wg = WireGuardTracker()
        label = state.wg.feed(ctx.from_initiator, data)
        if label is not None and state.disco:
            label = tailscale.join(state.best, label)
        return self._facts(state, label)

    def _disco(self, state: FlowState, sender: bytes) -> PacketFacts | None:
        """A Tailscale DISCO packet: label the flow, and keep reading it for WireGuard."""
        if not state.disco:
            state.disco = tailscale.disco_evidence(sender)
            return self._facts(state, tailscale.join(state.best, tailscale.label(state.disco)))
        return None

    def _udp_first(
        self, ctx: PacketContext, state: FlowState, payload: bytes, ports: tuple[int, int]
    ) -> PacketFacts | None:
        """First datagram of a direction: pick the protocol that fits."""
        first = payload[0]
        if first & 0xC0 == 0xC0 and len(payload) >= 1200 and ctx.from_initiator:
            header = quic.parse_long_header(payload)
            if header is not None and quic.known_version(header.version):
                return self._quic(ctx, state, payload)
        if first & 0x89 == 0x09 and ctx.from_initiator:
            gquic = quic.parse_gquic(payload)
            if gquic is not None:
                return self._gquic(state, gquic, ctx.flow)
        if payload[:3] == b"\x00\x00\x00" or first == 0x49:
            label = softether.natt_label(payload)
            if label is not None:
                return self._facts(state, label, done=True)
        if message_type(payload):
            return self._wireguard(ctx, state, payload)
        if openvpn.reset_opcode(payload) is not None:
            state.ovpn = openvpn.OpenVpnTracker(tcp=False)
            return self._facts(state, state.ovpn.feed(ctx.from_initiator, 0, payload))
        if self._cstp_peers and ports[1] == anyconnect.DTLS_PORT:
            record = anyconnect.dtls_record(payload)
            if record is not None and _peer_key(ctx.flow, 0) in self._cstp_peers:
                return self._facts(state, anyconnect.dtls_label(record), done=True)
        if self._forti_peers and ctx.from_initiator:
            record = anyconnect.dtls_record(payload)
            if record is not None and _peer_key(ctx.flow, ports[1]) in self._forti_peers:
                return self._facts(state, verdicts.forti_dtls_label(record), done=True)
        basis = self._softether_peers.get(_peer_key(ctx.flow, 0))
        if basis is not None and any(
            softether.UDP_ACCEL_LOW <= p <= softether.UDP_ACCEL_HIGH for p in ports
        ):
            # No surer than the TLS flow it stands next to: a port-only guess stays a guess.
            sure = labels.GUESS if basis is labels.GUESS else labels.MEDIUM
            label = labels.vpn(
                "softether", sure, ("udp_acceleration", "next to a SoftEther TLS flow")
            )
            return self._facts(state, label, done=True)
        if self._tinc_peers and (
            _peer_key(ctx.flow, ports[1]) in self._tinc_peers
            or _peer_key(ctx.flow, ports[0]) in self._tinc_peers
        ):
            label = labels.vpn("tinc", labels.MEDIUM, ("tinc_tcp_peer", "same hosts and port"))
            return self._facts(state, label, done=True)
        return None

    def _quic(self, ctx: PacketContext, state: FlowState, payload: bytes) -> PacketFacts | None:
        """Client Initial packets: decrypt, collect CRYPTO frames, read the ClientHello."""
        if not ctx.from_initiator:
            return None
        header = quic.parse_long_header(payload)
        if header is None or not header.is_initial or state.quic_tries >= _QUIC_TRIES:
            return self._facts(state, verdicts.quic_label(None), done=state.quic_crypto is not None)
        state.quic_tries += 1
        if state.quic_keys is None:
            state.quic_keys = quic.InitialKeys.derive(header.version, header.dcid)
            state.quic_crypto = quic.CryptoStream()
        frames = quic.decrypt_initial(payload, header, state.quic_keys)
        if frames is None or state.quic_crypto is None:
            done = not quic.HAVE_CRYPTO or state.quic_tries >= _QUIC_TRIES
            return self._facts(state, verdicts.quic_label(None), done=done)
        state.quic_crypto.add_frames(frames)
        hello = tls.parse_handshake_stream(state.quic_crypto.contiguous())
        if isinstance(hello, tls.ClientHello):
            return self._hello_facts(state, hello, "quic", ctx.flow)
        return self._facts(state, verdicts.quic_label(None), done=state.quic_tries >= _QUIC_TRIES)

    def _gquic(self, state: FlowState, gquic: quic.GoogleQuic, flow: FlowKey) -> PacketFacts | None:
        """Google QUIC: the CHLO is clear, so the SNI is read directly."""
        if gquic.sni is None:
            label = labels.plain("quic", "web", labels.MEDIUM, ("gquic_version", gquic.version))
            return self._facts(state, label, done=True)
        hello = tls.ClientHello(gquic.sni, (), 0)
        return self._hello_facts(state, hello, "quic", flow)

    # ------------------------------------------------------------------ shared

    @staticmethod
    def _remember(
        peers: OrderedDict[tuple[str, str, int], _V], key: tuple[str, str, int], value: _V
    ) -> None:
        """Add a host pair (with what is known of it) to a bounded memory used to label
        related flows."""
        peers[key] = value
        peers.move_to_end(key)
        if len(peers) > _PEER_MEMORY:
            peers.popitem(last=False)

    def _hello_facts(
        self, state: FlowState, hello: tls.ClientHello, proto: str, flow: FlowKey
    ) -> PacketFacts:
        """Facts and label for a parsed ClientHello (TLS over TCP or QUIC).

        Over TCP the flow stays open for the server's certificate (clear before TLS 1.3);
        QUIC always uses TLS 1.3, so a QUIC flow is done here.
        """
        wait = proto == "tls"
        state.done = not wait
        state.cert_wait = wait
        state.sni = hello.sni
        label = verdicts.sni_label(
            hello.sni,
            proto,
            _rport(flow),
            None if flow.remote is None else flow.remote.ip,
            hello.groups,
            hello.alpn,
        )
        if label.name == "softether" and proto == "tls":
            known = self._softether_peers.get(_peer_key(flow, 0), labels.GUESS)
            sure = max(known, label.confidence, key=lambda c: c.rank)
            self._remember(self._softether_peers, _peer_key(flow, 0), sure)
        return PacketFacts(
            label=self._better(state, label), sni=hello.sni, alpn=hello.alpn, done=not wait
        )

    def _dns_facts(self, state: FlowState, message: DnsMessage, name: str) -> PacketFacts:
        label = _DNS_LABELS[name]
        return PacketFacts(
            label=self._better(state, label),
            dns_query=message.query,
            dns_answers=message.answers,
        )


_KEEP_PORTS = frozenset({53, 5353, 5355, 500, 4500, 1701, 5004})
"""Ports whose flows keep being read: DNS answers, IKE after NAT-T ESP, L2TP, NAT-T probes."""


def _nothing_pending(state: FlowState, ctx: PacketContext) -> bool:
    """True when no parser waits for more of this flow, so it can be marked done early.

    Both directions must have shown their first payload (a reply can still confirm a
    handshake), unless one side has already sent a few packets with nothing recognised.
    """
    state.sides |= 1 if ctx.from_initiator else 2
    if state.sides != 3 and ctx.index < 2:
        return False
    if state.client_wait or state.server_wait or state.http or state.tunnel or state.tinc_sides:
        return False
    if state.disco:
        return False  # Tailscale: WireGuard follows DISCO (bounded by max_packets)
    if ctx.flow.transport is Transport.UDP and state.best is None and ctx.index + 1 < _WG_TRIES:
        return False  # WireGuard may still start (see _udp_later)
    if state.cert_wait:
        return False
    if (state.ovpn is not None and not state.ovpn.dead) or (
        state.wg is not None and not state.wg.dead
    ):
        return False
    if state.quic_crypto is not None or state.watermark is not None:
        return False
    flow = ctx.flow
    return flow.local.port not in _KEEP_PORTS and _rport(flow) not in _KEEP_PORTS


def _rport(flow: FlowKey) -> int:
    """The responder's port (0 when the flow has no remote side)."""
    return flow.remote.port if flow.remote is not None else 0


def _rip(flow: FlowKey) -> IPAddress | None:
    """The responder's address (None when the flow has no remote side)."""
    return flow.remote.ip if flow.remote is not None else None


def _dns_port(flow: FlowKey) -> int | None:
    """Return 53/5353/5355 when either side of the flow uses it, else None."""
    remote = flow.remote
    if remote is not None and remote.port in DNS_PORTS:
        return remote.port
    if flow.local.port in DNS_PORTS:
        return flow.local.port
    return None


def _peer_key(flow: FlowKey, port: int) -> tuple[str, str, int]:
    """Order-independent key for "these two hosts, this port" (tinc TCP meta -> UDP data)."""
    a = str(flow.local.ip)
    b = str(flow.remote.ip) if flow.remote is not None else ""
    return (min(a, b), max(a, b), port)
