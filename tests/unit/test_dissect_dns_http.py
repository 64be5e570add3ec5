"""DNS and clear HTTP through the Dissector: scapy-built messages, byte-exact to the RFCs."""

from __future__ import annotations

import ipaddress

from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.http import HTTP, HTTPRequest, HTTPResponse

from netwatch.dissect import Dissector
from netwatch.dissect.dns import parse_dns, read_name
from netwatch.dissect.http import parse_request, response_body_prefix
from netwatch.model import Endpoint, FlowKey, PacketContext, Transport, parse_ip


def _key(transport: Transport, cport: int, sport: int) -> FlowKey:
    return FlowKey(
        transport,
        Endpoint(parse_ip("192.0.2.10"), cport),
        Endpoint(parse_ip("198.51.100.7"), sport),
    )


def _ctx(key: FlowKey, from_initiator: bool = True, index: int = 0) -> PacketContext:
    return PacketContext(key, from_initiator, index, 1_700_000_000.0)


def test_dns_answer_maps_addresses_to_the_query_name_through_a_cname() -> None:
    reply = DNS(
        id=7,
        qr=1,
        rd=1,
        ra=1,
        qd=DNSQR(qname="www.vpngate.net", qtype="A"),
        an=[
            DNSRR(rrname="www.vpngate.net", type="CNAME", rdata="edge.example.net"),
            DNSRR(rrname="edge.example.net", type="A", rdata="203.0.113.5"),
            DNSRR(rrname="edge.example.net", type="AAAA", rdata="2001:db8::5"),
        ],
    )
    key = _key(Transport.UDP, 40000, 53)
    d = Dissector()
    query = d.inspect(_ctx(key), bytes(DNS(id=7, rd=1, qd=DNSQR(qname="www.vpngate.net"))))
    assert query is not None and query.dns_query == "www.vpngate.net"
    assert query.label is not None and query.label.name == "dns" and not query.label.vpn
    facts = d.inspect(_ctx(key, from_initiator=False), bytes(reply))
    assert facts is not None
    assert facts.dns_answers == (
        ("www.vpngate.net", ipaddress.IPv4Address("203.0.113.5")),
        ("www.vpngate.net", ipaddress.IPv6Address("2001:db8::5")),
    )


def test_dns_compression_pointer_loop_is_rejected_not_followed_forever() -> None:
    header = b"\x00\x01\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00"
    looping = header + b"\xc0\x0c" + b"\x00\x01\x00\x01"
    assert read_name(looping, 12) is None
    assert parse_dns(looping) is None


def test_non_dns_bytes_on_port_53_give_no_dns_facts() -> None:
    d = Dissector()
    facts = d.inspect(_ctx(_key(Transport.UDP, 40000, 53)), b"\x16\x03\x01hello")
    assert facts is None or facts.dns_query is None


def test_http_request_line_host_and_softether_vpnsvc_path() -> None:
    raw = bytes(
        HTTP()
        / HTTPRequest(
            Method=b"POST",
            Path=b"/vpnsvc/connect.cgi",
            Http_Version=b"HTTP/1.1",
            Host=b"vpn.example.org:443",
            Content_Type=b"image/jpeg",
        )
    )
    facts = Dissector().inspect(_ctx(_key(Transport.TCP, 50000, 80)), raw)
    assert facts is not None and facts.label is not None
    assert facts.http_request == "POST /vpnsvc/connect.cgi HTTP/1.1"
    assert facts.http_host == "vpn.example.org"
    assert (facts.label.name, facts.label.vpn, facts.label.confidence.value) == (
        "softether",
        True,
        "high",
    )


def test_vpngate_api_fetch_and_server_list_body_split_over_segments() -> None:
    key = _key(Transport.TCP, 50001, 80)
    req = bytes(HTTP() / HTTPRequest(Method=b"GET", Path=b"/api/iphone/", Host=b"www.vpngate.net"))
    d = Dissector()
    first = d.inspect(_ctx(key), req[:10])
    assert first is None  # request line not complete yet
    facts = d.inspect(_ctx(key, index=1), req[10:])
    assert facts is not None and facts.label is not None
    assert facts.label.name == "vpngate" and facts.label.confidence.value == "high"
    body = b"*vpn_servers\r\n#HostName,IP,Score,Ping,Speed\r\n"
    resp = bytes(HTTP() / HTTPResponse(Status_Code=b"200", Reason_Phrase=b"OK")) + body
    head, tail = resp[:20], resp[20:]
    assert d.inspect(_ctx(key, False, 0), head) is None
    done = d.inspect(_ctx(key, False, 1), tail)
    assert done is not None and done.body_prefix is not None
    assert done.body_prefix.startswith(b"*vpn_servers") and done.done


def test_ordinary_http_is_web_not_vpn() -> None:
    raw = b"GET /index.html HTTP/1.1\r\nHost: www.example.com\r\nAccept: */*\r\n\r\n"
    facts = Dissector().inspect(_ctx(_key(Transport.TCP, 50002, 80)), raw)
    assert facts is not None and facts.label is not None
    assert (facts.label.name, facts.label.category, facts.label.vpn) == ("http", "web", False)
    assert parse_request(b"NOT HTTP AT ALL") is None


def test_chunked_body_prefix_skips_the_chunk_size_line() -> None:
    resp = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1a\r\n*vpn_servers\r\n"
    assert response_body_prefix(resp) == b"*vpn_servers\r\n"
