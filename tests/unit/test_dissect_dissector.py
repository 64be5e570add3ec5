"""Dissector behaviour the pipeline relies on: bounded state, early stop, improving labels."""

from __future__ import annotations

import struct

from netwatch.dissect import Dissector
from netwatch.model import Endpoint, FlowKey, PacketContext, Transport, parse_ip

SID_C = bytes.fromhex("0102030405060708")
SID_S = bytes.fromhex("1112131415161718")
CLIENT_RESET = bytes([7 << 3]) + SID_C + b"\x00" + struct.pack(">I", 0)
SERVER_RESET = bytes([8 << 3]) + SID_S + b"\x01" + struct.pack(">I", 0) + SID_C + bytes(4)
DNS_QUERY = bytes.fromhex("abcd01000001000000000000") + b"\x07example\x03com\x00\x00\x01\x00\x01"


def _key(transport: Transport = Transport.UDP, cport: int = 40000, sport: int = 1194) -> FlowKey:
    return FlowKey(
        transport,
        Endpoint(parse_ip("192.0.2.10"), cport),
        Endpoint(parse_ip("198.51.100.7"), sport),
    )


def test_flow_is_done_after_its_decision_and_later_packets_cost_nothing() -> None:
    d = Dissector()
    key = _key(Transport.TCP, 50000, 1723)
    sccrq = struct.pack(">HHI", 156, 1, 0x1A2B3C4D) + struct.pack(">HH", 1, 0) + bytes(144)
    first = d.inspect(PacketContext(key, True, 0), sccrq)
    assert first is not None and first.done and first.label is not None
    assert d.inspect(PacketContext(key, False, 0), sccrq) is None


def test_only_the_first_packets_of_a_direction_are_inspected() -> None:
    d = Dissector(max_packets=8)
    key = _key()
    stop = d.inspect(PacketContext(key, True, 8), CLIENT_RESET)
    assert stop is not None and stop.done and stop.label is None  # the table stops calling
    assert d.inspect(PacketContext(key, True, 9), CLIENT_RESET) is None
    assert d.tracked_flows == 0  # rejected before any state was made


def test_unrecognised_flows_are_given_up_once_both_sides_spoke() -> None:
    d = Dissector()
    key = _key(Transport.TCP, 50000, 7000)
    assert d.inspect(PacketContext(key, True, 0), b"HELLO unknown protocol\r\n") is None
    reply = d.inspect(PacketContext(key, False, 0), b"WELCOME\r\n")
    assert reply is not None and reply.done and reply.label is None


def test_dns_flows_are_inspected_longer_than_others() -> None:
    d = Dissector(max_packets=8)
    key = _key(sport=53)
    facts = d.inspect(PacketContext(key, True, 30), DNS_QUERY)
    assert facts is not None and facts.dns_query == "example.com"
    assert d.inspect(PacketContext(key, True, 64), DNS_QUERY) is None


def test_labels_only_improve_during_a_flow() -> None:
    d = Dissector()
    key = _key()
    assert d.inspect(PacketContext(key, True, 0), CLIENT_RESET) is None  # one packet proves little
    high = d.inspect(PacketContext(key, False, 0), SERVER_RESET)
    assert high is not None and high.label is not None and high.label.confidence.value == "high"
    again = d.inspect(PacketContext(key, True, 1), bytes([5 << 3]) + SID_C + bytes(5))
    assert again is None or again.label is None


def test_forget_drops_the_flow_state() -> None:
    d = Dissector()
    key = _key()
    d.inspect(PacketContext(key, True, 0), CLIENT_RESET)
    assert d.tracked_flows == 1
    d.forget(key)
    assert d.tracked_flows == 0
    reply = d.inspect(PacketContext(key, False, 0), SERVER_RESET)
    assert reply is None or reply.label is None or reply.label.confidence.value != "high"


def test_state_is_bounded_by_max_flows() -> None:
    d = Dissector(max_flows=3)
    for port in range(40000, 40010):
        d.inspect(PacketContext(_key(cport=port), True, 0), CLIENT_RESET)
    assert d.tracked_flows == 3


def test_transports_without_dissectors_are_dismissed_at_once() -> None:
    facts = Dissector().inspect(PacketContext(_key(Transport.ICMP, 0, 0), True, 0), b"\x08\x00")
    assert facts is not None and facts.done and facts.label is None
    assert Dissector().inspect(PacketContext(_key(), True, 0), b"") is None
