"""Route lookup replies (`sources.routes`): the RTM_NEWROUTE layout, errors, and fuzzing."""

from __future__ import annotations

import ipaddress
import socket
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from netwatch.sources import routes


def _reply(oif: int | None, *, kind: int = routes.RTM_NEWROUTE, extra: bytes = b"") -> bytes:
    """An RTM_NEWROUTE message as the kernel sends it: rtmsg, RTA_DST, [RTA_OIF], extra."""
    attrs = struct.pack("=HH4s", 8, routes.RTA_DST, bytes([203, 0, 113, 9]))
    if oif is not None:
        attrs += struct.pack("=HHi", 8, routes.RTA_OIF, oif)
    body = struct.pack("=BBBBBBBBI", socket.AF_INET, 32, 0, 0, 254, 2, 0, 1, 0) + attrs + extra
    return struct.pack("=IHHII", 16 + len(body), kind, 0, 1, 0) + body


def test_the_request_asks_for_one_destination() -> None:
    req = routes.build_request(ipaddress.ip_address("2001:db8::7"), seq=9)
    length, kind, flags, seq, _pid = struct.unpack_from("=IHHII", req)
    assert (length, kind, flags, seq) == (len(req), routes.RTM_GETROUTE, routes.NLM_F_REQUEST, 9)
    family, dst_len = req[16], req[17]
    assert (family, dst_len) == (socket.AF_INET6, 128)
    rta_len, rta_type = struct.unpack_from("=HH", req, 28)
    assert (rta_len, rta_type) == (20, routes.RTA_DST)
    assert req[32:48] == ipaddress.ip_address("2001:db8::7").packed


def test_the_output_interface_is_read_after_other_attributes() -> None:
    assert routes.parse_reply(_reply(7)) == 7


def test_no_oif_an_error_or_a_cut_message_is_none() -> None:
    assert routes.parse_reply(_reply(None)) is None
    assert routes.parse_reply(_reply(7, kind=routes.NLMSG_ERROR)) is None
    assert routes.parse_reply(_reply(7)[:-3]) is None
    assert routes.parse_reply(b"") is None


def test_a_lookup_without_netlink_answers_none() -> None:
    lookup = routes.RouteLookup()
    lookup._broken = True  # as after socket() failed in a sandbox without netlink
    assert lookup.egress("203.0.113.9") is None


def test_answers_are_cached_then_asked_again() -> None:
    now = [0.0]
    asked: list[int] = []

    def name(index: int) -> str:
        asked.append(index)
        return "lo"

    lookup = routes.RouteLookup(monotonic=lambda: now[0], names=name)
    assert lookup.egress("127.0.0.1") == "lo"
    assert lookup.egress("127.0.0.1") == "lo"
    assert len(asked) == 1
    now[0] += routes.CACHE_SECONDS + 1
    assert lookup.egress("127.0.0.1") == "lo"
    assert len(asked) == 2
    lookup.close()


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_parse_never_raises(data: bytes) -> None:
    got = routes.parse_reply(data)
    assert got is None or got > 0


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=-(2**31), max_value=2**31 - 1), st.binary(max_size=24))
def test_parse_reads_any_oif_behind_any_attribute_bytes(oif: int, junk: bytes) -> None:
    got = routes.parse_reply(_reply(oif, extra=junk))
    assert got == (oif if oif > 0 else None)


def test_with_links_hands_back_the_same_facts_while_nothing_changed() -> None:
    from netwatch.model import HostFacts

    lookup = routes.RouteLookup()
    facts = routes.with_links(HostFacts(1.0), lookup)
    assert "lo" in facts.interfaces and len(facts.routes) == 2
    assert routes.with_links(facts, lookup) is facts  # the detection context stays the same
    lookup.close()
