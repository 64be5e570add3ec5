"""Who initiated a socket, decided from the socket table alone (pure)."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from netwatch.flows.attribution import (
    assign_directions,
    attribute,
    flows_from_sockets,
    infer_direction,
    listeners_of,
    listening_ports,
    orient,
)
from netwatch.flows.table import FlowOwner, FlowState, FlowTable
from netwatch.model import (
    Attribution,
    Direction,
    Endpoint,
    FlowKey,
    PacketMeta,
    SocketEntry,
    SocketTable,
    Transport,
    parse_ip,
)
from tests.builders import T0, make_process


def ep(ip: str, port: int) -> Endpoint:
    return Endpoint(parse_ip(ip), port)


def sock(
    local: tuple[str, int],
    remote: tuple[str, int] | None = None,
    state: str | None = "ESTABLISHED",
    transport: Transport = Transport.TCP,
) -> SocketEntry:
    key = FlowKey(transport, ep(*local), None if remote is None else ep(*remote))
    return SocketEntry(key=key, state=state, direction=Direction.UNKNOWN)


def directions(entries: list[SocketEntry]) -> list[Direction]:
    return [e.direction for e in assign_directions(entries)]


def test_listener_accepted_and_client_sockets() -> None:
    entries = [
        sock(("0.0.0.0", 22), state="LISTEN"),
        sock(("10.0.0.5", 22), ("10.0.0.9", 51000)),  # accepted
        sock(("10.0.0.5", 41000), ("203.0.113.7", 22)),  # our ssh client
    ]
    assert directions(entries) == [Direction.LISTEN, Direction.INBOUND, Direction.OUTBOUND]


def test_listener_on_one_address_does_not_claim_other_addresses() -> None:
    entries = [
        sock(("127.0.0.1", 8080), state="LISTEN"),
        sock(("10.0.0.5", 8080), ("198.51.100.1", 443)),  # ephemeral port that happens to match
        sock(("127.0.0.1", 8080), ("127.0.0.1", 40000)),
    ]
    assert directions(entries) == [Direction.LISTEN, Direction.OUTBOUND, Direction.INBOUND]


def test_ipv6_wildcard_listener_covers_ipv4_accepted_sockets() -> None:
    entries = [
        sock(("::", 443), state="LISTEN"),
        sock(("::ffff:192.0.2.1", 443), ("::ffff:198.51.100.7", 50000)),
    ]
    assert entries[1].key.local.ip.version == 4  # unmapped by the model
    assert directions(entries) == [Direction.LISTEN, Direction.INBOUND]


def test_listening_port_of_other_transport_does_not_count() -> None:
    entries = [
        sock(("0.0.0.0", 53), state=None, transport=Transport.UDP),
        sock(("10.0.0.5", 53), ("198.51.100.1", 53)),  # tcp, outbound
    ]
    assert directions(entries) == [Direction.LISTEN, Direction.OUTBOUND]


def test_udp_connected_on_a_udp_server_port_is_inbound() -> None:
    entries = [
        sock(("0.0.0.0", 443), state=None, transport=Transport.UDP),
        sock(("192.0.2.1", 443), ("198.51.100.9", 6000), transport=Transport.UDP),
        sock(("192.0.2.1", 55000), ("198.51.100.9", 443), transport=Transport.UDP),
    ]
    assert directions(entries) == [Direction.LISTEN, Direction.INBOUND, Direction.OUTBOUND]


def test_syn_recv_is_inbound_and_bound_tcp_is_unknown() -> None:
    entries = [
        sock(("10.0.0.5", 9000), ("10.0.0.9", 1234), state="SYN_RECV"),
        sock(("10.0.0.5", 9001), None, state="CLOSE"),
        sock(("0.0.0.0", 1), None, state=None, transport=Transport.RAW),
        sock(("10.0.0.5", 9002), ("10.0.0.9", 1), state="SYN_SENT"),
    ]
    assert directions(entries) == [
        Direction.INBOUND,
        Direction.UNKNOWN,
        Direction.UNKNOWN,
        Direction.OUTBOUND,
    ]


def test_time_wait_of_an_accepted_connection_stays_inbound() -> None:
    entries = [
        sock(("0.0.0.0", 80), state="LISTEN"),
        sock(("192.0.2.1", 80), ("198.51.100.2", 40000), state="TIME_WAIT"),
    ]
    assert directions(entries)[1] is Direction.INBOUND


def test_flows_from_sockets_carries_process_counters_and_infers_direction() -> None:
    proc = make_process("nginx", pid=10)
    entries = (
        SocketEntry(
            key=FlowKey(Transport.TCP, ep("0.0.0.0", 80), None),
            state="LISTEN",
            direction=Direction.UNKNOWN,
            process=proc,
        ),
        SocketEntry(
            key=FlowKey(Transport.TCP, ep("192.0.2.1", 80), ep("198.51.100.2", 40000)),
            state="ESTABLISHED",
            direction=Direction.UNKNOWN,
            bytes_sent=10,
            bytes_received=20,
            segs_out=3,
            segs_in=4,
        ),
    )
    flows = flows_from_sockets(SocketTable(taken_at=T0, entries=entries), T0 + 1)
    assert [f.direction for f in flows] == [Direction.LISTEN, Direction.INBOUND]
    assert flows[0].process == proc and flows[0].attribution is Attribution.SOCKET
    assert flows[1].attribution is Attribution.UNKNOWN
    assert (flows[1].bytes_sent, flows[1].bytes_received) == (10, 20)
    assert (flows[1].packets_sent, flows[1].packets_received) == (3, 4)
    assert flows[1].last_seen == T0 + 1


def test_directions_set_by_the_source_are_kept() -> None:
    entry = SocketEntry(
        key=FlowKey(Transport.TCP, ep("192.0.2.1", 5000), ep("198.51.100.2", 80)),
        state="ESTABLISHED",
        direction=Direction.INBOUND,
    )
    (flow,) = flows_from_sockets(SocketTable(taken_at=T0, entries=(entry,)))
    assert flow.direction is Direction.INBOUND


def test_listening_ports_and_index() -> None:
    entries = [
        sock(("0.0.0.0", 22), state="LISTEN"),
        sock(("::1", 631), state="LISTEN"),
        sock(("0.0.0.0", 5353), state=None, transport=Transport.UDP),
        sock(("10.0.0.5", 40000), ("10.0.0.9", 22)),
    ]
    assert listening_ports(entries) == {("tcp", 22), ("tcp", 631), ("udp", 5353)}
    assert listeners_of(entries)[(Transport.TCP, 631)] == frozenset({parse_ip("::1")})


ports = st.integers(1, 65535)
ips = st.sampled_from(["0.0.0.0", "127.0.0.1", "192.0.2.1", "::", "::1", "2001:db8::1"])


@given(
    st.lists(
        st.tuples(
            ips,
            ports,
            st.none() | st.tuples(ips, ports),
            st.sampled_from([None, "LISTEN", "ESTABLISHED", "SYN_RECV", "TIME_WAIT"]),
            st.sampled_from([Transport.TCP, Transport.UDP, Transport.ICMP]),
        ),
        max_size=30,
    )
)
def test_every_socket_gets_exactly_one_consistent_direction(rows: list[tuple]) -> None:  # type: ignore[type-arg]
    entries = [sock((ip, port), remote, state, t) for ip, port, remote, state, t in rows]
    listeners = listeners_of(entries)
    for e in assign_directions(entries):
        assert e.direction is infer_direction(e.key, e.state, listeners)
        if e.direction is Direction.LISTEN:
            assert e.key.remote is None
        if e.direction in (Direction.INBOUND, Direction.OUTBOUND):
            assert e.key.remote is not None


def _packet_flow(src: Endpoint, dst: Endpoint) -> FlowState:
    table = FlowTable()
    return table.ingest(PacketMeta(T0, Transport.TCP, src, dst, 60, b"", ip_proto=6, tcp_flags=2))


def test_attribute_returns_the_owner_and_leaves_the_flow_as_it_was() -> None:
    """Attribution is a pure answer: the table, not the caller, stores it on the flow."""
    here, there = ep("192.0.2.1", 40000), ep("198.51.100.7", 443)
    state = _packet_flow(here, there)
    curl = make_process("curl")
    entry = SocketEntry(FlowKey(Transport.TCP, here, there), "ESTABLISHED", Direction.OUTBOUND)
    table = SocketTable(taken_at=T0, entries=(replace(entry, process=curl),))
    local = frozenset({here.ip})
    owner = attribute(state, table, local)
    assert owner == FlowOwner(curl, Attribution.SOCKET, True)
    assert state.owner == FlowOwner()  # untouched until the table owns it
    FlowTable.own(state, owner)
    assert attribute(state, table, local) is owner  # unchanged: the very value, for identity
    gone = attribute(state, SocketTable(taken_at=T0, entries=()), local)
    assert gone == FlowOwner(curl, Attribution.CACHED, True) and state.owner is owner
    assert orient(state).process is curl and orient(state).direction is Direction.OUTBOUND


def test_attribute_takes_the_connect_owner_and_orients_by_local_address() -> None:
    here, there = ep("192.0.2.1", 40000), ep("198.51.100.7", 443)
    vpn = make_process("openvpn")
    empty = SocketTable(taken_at=T0, entries=())
    caught = {FlowKey(Transport.TCP, a, b): vpn for a, b in ((here, there), (there, here))}.get
    state = _packet_flow(there, here)  # the peer initiated: this host is the responder
    owner = attribute(state, empty, frozenset({here.ip}), caught)
    assert owner == FlowOwner(None, Attribution.UNKNOWN, False)  # connect owners are for ours only
    FlowTable.own(state, owner)
    assert orient(state).direction is Direction.INBOUND and orient(state).key.local == here
    mine = _packet_flow(here, there)
    assert attribute(mine, empty, frozenset({here.ip}), caught) == FlowOwner(
        vpn, Attribution.CONNECT, True
    )
