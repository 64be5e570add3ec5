"""TLS 1.2 server certificates: crafted server flights, split segments, providers, hostile DER."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.tls.extensions import ServerName, TLS_Ext_ServerName
from scapy.layers.tls.handshake import TLSClientHello
from scapy.layers.tls.record import TLS

from netwatch.dissect import Dissector
from netwatch.dissect.certificate import MAX_SERVER_BYTES, leaf_names, server_certificate
from netwatch.dissect.tls import NEED_MORE
from netwatch.model import (
    Confidence,
    Endpoint,
    FlowKey,
    PacketContext,
    PacketFacts,
    Transport,
    parse_ip,
)
from tests.certs import (
    FORTIGATE_SUBJECT,
    certificate_message,
    der,
    handshake,
    make_cert,
    records,
    server_flight,
    server_hello,
)

KEY = FlowKey(
    Transport.TCP, Endpoint(parse_ip("192.0.2.10"), 51000), Endpoint(parse_ip("203.0.113.9"), 443)
)
FORTI = der(make_cert(FORTIGATE_SUBJECT))
CA = der(make_cert({"O": "Example CA", "CN": "Example Root"}))
ORDINARY = der(
    make_cert({"CN": "www.example.com"}, {"O": "Example CA"}, ("www.example.com", "example.com"))
)


def _hello(sni: str | None = None) -> bytes:
    ext = [TLS_Ext_ServerName(servernames=[ServerName(servername=sni.encode())])] if sni else []
    return bytes(TLS(msg=[TLSClientHello(ext=ext)]))


def _feed(server_segments: list[bytes], sni: str | None = None) -> list[PacketFacts | None]:
    """A ClientHello, then the server's segments; the dissector's answer to each packet."""
    d = Dissector()
    out = [d.inspect(PacketContext(KEY, True, 0), _hello(sni))]
    for i, seg in enumerate(server_segments):
        out.append(d.inspect(PacketContext(KEY, False, i), seg))
    return out


def _split(data: bytes, *cuts: int) -> list[bytes]:
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False) if b > a]


def test_fortigate_factory_certificate_labels_the_flow_fortinet_with_its_evidence() -> None:
    facts = _feed([server_flight(FORTI, CA)])
    hello, cert = facts
    assert hello is not None and not hello.done  # the flow stays open for the server's reply
    assert cert is not None and cert.done and cert.tls_cert is not None
    assert cert.tls_cert.subject == "CN=FGT60E0000000000,OU=FortiGate,O=Fortinet"
    assert cert.tls_cert.issuer == cert.tls_cert.subject  # self-signed; the CA is not the leaf
    label = cert.label
    assert label is not None and (label.name, label.category, label.vpn) == (
        "fortinet",
        "vpn",
        True,
    )
    assert label.confidence is Confidence.MEDIUM
    assert [(e.name, e.value) for e in label.evidence] == [
        ("cert_subject", "CN=FGT60E0000000000,OU=FortiGate,O=Fortinet")
    ]


@pytest.mark.parametrize(
    "cuts",
    [(1,), (5,), (9,), (60,), (100, 101), (3, 200, 250), (90, 95, 400)],
    ids=lambda c: "-".join(map(str, c)),
)
def test_certificate_split_across_segments_is_joined(cuts: tuple[int, ...]) -> None:
    segments = _split(server_flight(FORTI, CA), *cuts)
    facts = _feed(segments)
    assert all(f is None for f in facts[1:-1])  # waiting, not guessing
    last = facts[-1]
    assert last is not None and last.tls_cert is not None and last.label is not None
    assert last.label.name == "fortinet"


def test_certificate_fragmented_over_small_records_and_segments() -> None:
    flight = server_flight(FORTI, CA, record_size=64)
    facts = _feed(_split(flight, *range(150, len(flight), 150)))
    cert = next(f for f in facts[1:] if f is not None)
    assert cert.tls_cert is not None and cert.tls_cert.subject.startswith("CN=FGT60E")


def test_ordinary_certificate_gives_facts_but_no_vpn_label() -> None:
    facts = _feed([server_flight(ORDINARY, CA)], sni="www.example.com")
    hello, cert = facts
    assert hello is not None and hello.label is not None and hello.label.name == "tls"
    assert cert is not None and cert.done and cert.label is None
    assert cert.tls_cert is not None
    assert cert.tls_cert.subject == "CN=www.example.com"
    assert cert.tls_cert.issuer == "O=Example CA"
    assert cert.tls_cert.san == ("www.example.com", "example.com")


def test_fortigate_tls_inspection_issuer_is_not_a_vpn() -> None:
    # FortiGate's SSL deep inspection re-signs sites with its own CA: the issuer says
    # Fortinet, the subject is the site. That is a firewall in the path, not a VPN endpoint.
    leaf = der(
        make_cert(
            {"CN": "www.example.com"},
            {"O": "Fortinet", "OU": "Certificate Authority", "CN": "FG100F0000000000"},
        )
    )
    cert = _feed([server_flight(leaf)])[1]
    assert cert is not None and cert.tls_cert is not None and cert.label is None


@pytest.mark.parametrize(
    ("subject", "issuer", "san", "name", "evidence"),
    [
        (
            {"CN": "london411"},
            {"O": "Private Internet Access", "CN": "Private Internet Access"},
            (),
            "pia",
            ("cert_issuer", "CN=Private Internet Access,O=Private Internet Access"),
        ),
        ({"CN": "x"}, None, ("*.windscribe.com",), "windscribe", ("cert_san", "*.windscribe.com")),
        ({"CN": "relay.psiphon3.net"}, None, (), "psiphon", ("cert_cn", "relay.psiphon3.net")),
    ],
    ids=["pia-issuer", "windscribe-san", "psiphon-cn"],
)
def test_providers_are_named_from_their_certificates(
    subject: dict[str, str],
    issuer: dict[str, str] | None,
    san: tuple[str, ...],
    name: str,
    evidence: tuple[str, str],
) -> None:
    cert = _feed([server_flight(der(make_cert(subject, issuer, san)))])[1]
    assert cert is not None and cert.label is not None
    assert (cert.label.name, cert.label.vpn, cert.label.confidence) == (
        name,
        True,
        Confidence.MEDIUM,
    )
    assert (cert.label.evidence[0].name, cert.label.evidence[0].value) == evidence


def test_provider_host_names_count_only_when_no_host_name_was_asked_for() -> None:
    # A shared (CDN) certificate that also lists a provider's domain answers for the SNI's site;
    # a VPN app dialling its server by address sends no SNI, or the address itself.
    shared = server_flight(der(make_cert({"CN": "cdn.example"}, None, ("*.windscribe.com",))))
    for_site = _feed([shared], sni="www.example.com")[1]
    assert for_site is not None and for_site.tls_cert is not None and for_site.label is None
    by_address = _feed([shared], sni="203.0.113.9")[1]
    assert by_address is not None and by_address.label is not None
    assert by_address.label.name == "windscribe"
    forti = _feed([server_flight(FORTI)], sni="vpn.example.com")[1]
    assert forti is not None and forti.label is not None and forti.label.name == "fortinet"


def test_tls13_server_hello_ends_the_flow_without_certificate_facts() -> None:
    flight = records(server_hello(tls13=True)) + b"\x14\x03\x03\x00\x01\x01" + b"\x17\x03\x03"
    reply = _feed([flight])[1]
    assert reply is not None and reply.done and reply.tls_cert is None and reply.label is None


def test_resumed_session_without_certificate_ends_the_flow() -> None:
    flight = records(server_hello()) + b"\x14\x03\x03\x00\x01\x01"
    reply = _feed([flight])[1]
    assert reply is not None and reply.done and reply.tls_cert is None


def test_unreadable_der_ends_the_flow_quietly() -> None:
    broken = bytearray(FORTI)
    broken[4:12] = b"\xff" * 8
    reply = _feed([records(server_hello() + certificate_message(bytes(broken)))])[1]
    assert reply is not None and reply.done and reply.tls_cert is None


def test_reassembly_is_bounded() -> None:
    # A leaf that claims 20 KB is refused at once; a stream that never completes stops at 16 KB.
    claim = handshake(11, (20003).to_bytes(3, "big") + (20000).to_bytes(3, "big") + bytes(100))
    assert server_certificate(records(server_hello() + claim)) is None
    leaf = (16386).to_bytes(3, "big") + (16380).to_bytes(3, "big") + bytes(16380)
    endless = records(server_hello() + handshake(11, leaf))
    assert len(endless) > MAX_SERVER_BYTES
    assert server_certificate(endless[: MAX_SERVER_BYTES - 1]) is NEED_MORE
    assert server_certificate(endless) is None
    segments = [endless[i : i + 1400] for i in range(0, len(endless), 1400)]
    facts = _feed(segments)
    assert facts[-1] is not None and facts[-1].done and facts[-1].tls_cert is None


def test_certificate_longer_than_eight_segments_is_still_read() -> None:
    big = der(make_cert({"CN": "x"}, None, tuple(f"h{i}.windscribe.com" for i in range(200))))
    segments = _split(server_flight(big), *range(536, len(big), 536))
    assert len(segments) > 8
    cert = _feed(segments)[-1]
    assert cert is not None and cert.label is not None and cert.label.name == "windscribe"
    assert cert.tls_cert is not None and len(cert.tls_cert.san) == 16  # names kept are bounded


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=4096))
def test_server_certificate_parser_never_raises(data: bytes) -> None:
    server_certificate(data)
    server_certificate(records(server_hello()) + data)
    leaf_names(data)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(FORTI) - 1), st.integers(0, 255)), max_size=8))
def test_mutated_certificates_never_raise_and_stay_quick(edits: list[tuple[int, int]]) -> None:
    mutated = bytearray(FORTI)
    for pos, value in edits:
        mutated[pos] = value
    flight = server_flight(bytes(mutated))
    start = time.perf_counter()
    found = server_certificate(flight)
    assert time.perf_counter() - start < 0.5
    assert found is None or found is not NEED_MORE


def _dtls_hello(sport: int, dport: int, server: str = "203.0.113.9") -> tuple[FlowKey, bytes]:
    """A DTLS 1.2 ClientHello record (epoch 0) from the client of KEY, per RFC 6347."""
    key = FlowKey(
        Transport.UDP, Endpoint(parse_ip("192.0.2.10"), sport), Endpoint(parse_ip(server), dport)
    )
    body = b"\x01" + bytes(60)
    return key, b"\x16\xfe\xfd" + bytes(8) + len(body).to_bytes(2, "big") + body


def test_dtls_to_the_port_of_a_fortigate_certificate_is_fortinet_dtls() -> None:
    d = Dissector()
    d.inspect(PacketContext(KEY, True, 0), _hello())
    cert = d.inspect(PacketContext(KEY, False, 0), server_flight(FORTI, CA))
    assert cert is not None and cert.label is not None and cert.label.name == "fortinet"
    key, dtls = _dtls_hello(51001, 443)
    facts = d.inspect(PacketContext(key, True, 0), dtls)
    assert facts is not None and facts.label is not None
    assert (facts.label.name, facts.label.confidence) == ("fortinet", Confidence.MEDIUM)
    ev = {e.name: e.value for e in facts.label.evidence}
    assert ev["dtls_record"] == "handshake v1.2" and "fortigate_session" in ev


@pytest.mark.parametrize(
    ("sport", "dport", "server", "why"),
    [
        (51002, 4433, "203.0.113.9", "another port"),
        (51003, 443, "203.0.113.10", "another server"),
    ],
)
def test_dtls_not_paired_with_a_fortigate_flow_is_not_fortinet(
    sport: int, dport: int, server: str, why: str
) -> None:
    d = Dissector()
    d.inspect(PacketContext(KEY, True, 0), _hello())
    d.inspect(PacketContext(KEY, False, 0), server_flight(FORTI, CA))
    key, dtls = _dtls_hello(sport, dport, server)
    facts = d.inspect(PacketContext(key, True, 0), dtls)
    label = None if facts is None else facts.label
    assert label is None or label.name != "fortinet", why


def test_dtls_after_an_ordinary_certificate_is_not_fortinet() -> None:
    d = Dissector()
    d.inspect(PacketContext(KEY, True, 0), _hello("www.example.com"))
    d.inspect(PacketContext(KEY, False, 0), server_flight(ORDINARY, CA))
    key, dtls = _dtls_hello(51004, 443)
    facts = d.inspect(PacketContext(key, True, 0), dtls)
    assert facts is None or facts.label is None or facts.label.name != "fortinet"
