"""SocketTable.lookup: which socket a flow belongs to, from the most to the least specific."""

from __future__ import annotations

from netwatch.model import Direction, Endpoint, FlowKey, SocketEntry, SocketTable, Transport
from netwatch.model import parse_ip as ip


def entry(
    transport: Transport, local: str, port: int, remote: tuple[str, int] | None = None
) -> SocketEntry:
    far = None if remote is None else Endpoint(ip(remote[0]), remote[1])
    key = FlowKey(transport, Endpoint(ip(local), port), far)
    return SocketEntry(key=key, state=None, direction=Direction.UNKNOWN)


TCP, UDP = Transport.TCP, Transport.UDP
HERE, THERE = Endpoint(ip("192.0.2.1"), 5000), Endpoint(ip("203.0.113.9"), 443)
HERE6 = Endpoint(ip("2001:db8::1"), 5000)


def test_exact_pair_then_bound_address_then_wildcards_in_order() -> None:
    exact = entry(TCP, "192.0.2.1", 5000, ("203.0.113.9", 443))
    bound = entry(TCP, "192.0.2.1", 5000)
    any4 = entry(TCP, "0.0.0.0", 5000)
    any6 = entry(TCP, "::", 5000)
    assert SocketTable(0.0, (any6, any4, bound, exact)).lookup(TCP, HERE, THERE) is exact
    assert SocketTable(0.0, (any6, any4, bound)).lookup(TCP, HERE, THERE) is bound
    assert SocketTable(0.0, (any6, any4)).lookup(TCP, HERE, THERE) is any4  # IPv4 first
    assert SocketTable(0.0, (any6,)).lookup(TCP, HERE, THERE) is any6  # dual-stack socket
    assert SocketTable(0.0, (any4,)).lookup(TCP, HERE6, THERE) is None  # v6 never hits 0.0.0.0
    assert SocketTable(0.0, (any6,)).lookup(TCP, HERE6, THERE) is any6


def test_transport_port_and_connected_sockets_do_not_match_by_wildcard() -> None:
    table = SocketTable(
        0.0,
        (
            entry(UDP, "0.0.0.0", 5000),
            entry(TCP, "0.0.0.0", 5001),
            entry(TCP, "0.0.0.0", 5000, ("198.51.100.1", 80)),  # connected: not a wildcard
        ),
    )
    assert table.lookup(TCP, HERE, THERE) is None
    assert table.lookup(UDP, HERE, THERE) is table.entries[0]
    assert SocketTable(0.0, ()).lookup(TCP, HERE, None) is None
