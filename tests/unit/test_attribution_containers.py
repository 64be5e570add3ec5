"""Packet flows joined to the sockets of other network namespaces (containers): pure.

A container's socket lives in its own namespace; the host sees its packets on the host side
of a veth (routed: the container's own addresses) or, behind masquerade, under the host's
address, which conntrack's translations (`SocketTable.nat`) map back to the original view.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from netwatch.flows.attribution import attribute, attributed_flows, contained_owner
from netwatch.flows.merge import merge_flows
from netwatch.flows.socket_flows import SocketFlows
from netwatch.flows.table import FlowOwner, FlowState, FlowTable
from netwatch.model import (
    Attribution,
    Container,
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

CTR = Container(netns=4026532999, name="web", runtime="docker")
OTHER = Container(netns=4026533000, name="db", runtime="podman")


def ep(ip: str, port: int) -> Endpoint:
    return Endpoint(parse_ip(ip), port)


INSIDE = ep("172.17.0.2", 51234)  # the container's end
PEER = ep("203.0.113.9", 443)  # the far end
OUTSIDE = ep("192.0.2.1", 40001)  # the host's address after masquerade
LOCAL = frozenset({OUTSIDE.ip, parse_ip("172.17.0.1")})


def entry(
    local: Endpoint,
    remote: Endpoint | None,
    container: Container | None,
    name: str,
    state: str = "ESTABLISHED",
) -> SocketEntry:
    return SocketEntry(
        FlowKey(Transport.TCP, local, remote),
        state,
        Direction.UNKNOWN,
        process=make_process(name),
        inode=hash((local, remote, name)) & 0xFFFFFF,
        container=container,
    )


def packet_flow(src: Endpoint, dst: Endpoint) -> FlowState:
    table = FlowTable()
    return table.ingest(PacketMeta(T0, Transport.TCP, src, dst, 60, b"", ip_proto=6, tcp_flags=2))


def test_a_routed_container_flow_is_its_socket_s_with_the_container() -> None:
    sender = entry(INSIDE, PEER, CTR, "ctrsender")
    table = SocketTable(T0, (sender,))
    state = packet_flow(INSIDE, PEER)
    owner = attribute(state, table, LOCAL)
    assert owner == FlowOwner(sender.process, Attribution.SOCKET, True, container=CTR)
    FlowTable.own(state, owner)
    (flow,) = attributed_flows([state], table, LOCAL)
    assert flow.process == sender.process and flow.container == CTR
    assert flow.key.local == INSIDE and flow.direction is Direction.OUTBOUND


def test_a_masqueraded_flow_is_traced_back_through_conntrack() -> None:
    sender = entry(INSIDE, PEER, CTR, "ctrsender")
    # The far end is a namespace on this machine too: its accepted socket names the host's
    # translated address, and must not win over the container that opened the connection.
    far = entry(PEER, OUTSIDE, OTHER, "server")
    original, translated = (Transport.TCP, INSIDE, PEER), (Transport.TCP, OUTSIDE, PEER)
    table = SocketTable(T0, (sender, far), nat=((original, translated),))
    state = packet_flow(OUTSIDE, PEER)
    assert attribute(state, table, LOCAL) == FlowOwner(
        sender.process, Attribution.SOCKET, True, container=CTR
    )
    without = SocketTable(T0, (sender, far))
    assert contained_owner(without, Transport.TCP, OUTSIDE, PEER) == (far, False)


def test_a_published_port_is_traced_to_the_container_s_accepted_socket() -> None:
    """DNAT: the peer connects to the host's port 8080, the container accepts on 80."""
    client = ep("198.51.100.3", 50000)
    published, inside = ep("192.0.2.1", 8080), ep("172.17.0.2", 80)
    accepted = entry(inside, client, CTR, "nginx")
    nat = (((Transport.TCP, client, published), (Transport.TCP, client, inside)),)
    table = SocketTable(T0, (accepted,), nat=nat)
    owner = attribute(packet_flow(client, published), table, LOCAL)
    assert owner == FlowOwner(accepted.process, Attribution.SOCKET, False, container=CTR)


def test_a_container_s_sockets_never_own_the_host_s_flows() -> None:
    """A container's listener on 0.0.0.0:443 must not be taken for the owner of a host
    connection to port 443, nor its connected socket for one with the same ends."""
    listener = entry(ep("0.0.0.0", 443), None, CTR, "nginx", state="LISTEN")
    twin = entry(OUTSIDE, PEER, CTR, "ctrsender")
    table = SocketTable(T0, (listener, twin))
    assert table.lookup(Transport.TCP, OUTSIDE, PEER) is None
    assert table.lookup(Transport.TCP, ep("192.0.2.1", 443), PEER) is None
    assert table.lookup_contained(Transport.TCP, ep("10.0.0.1", 443), PEER) is None
    assert table.lookup_contained(Transport.TCP, OUTSIDE, PEER) is twin
    host = entry(OUTSIDE, PEER, None, "curl")
    both = SocketTable(T0, (twin, host))
    assert attribute(packet_flow(OUTSIDE, PEER), both, LOCAL).process == host.process


def test_a_flow_first_owned_by_the_far_end_moves_to_the_initiator() -> None:
    """The far end's namespace was listed first; once the initiator's is, it owns the flow."""
    sender = entry(INSIDE, PEER, CTR, "ctrsender")
    far = entry(PEER, INSIDE, OTHER, "server")
    state = packet_flow(INSIDE, PEER)
    first = attribute(state, SocketTable(T0, (far,)), LOCAL)
    assert first == FlowOwner(far.process, Attribution.SOCKET, False, container=OTHER)
    FlowTable.own(state, first)
    later = attribute(state, SocketTable(T0, (far, sender)), LOCAL)
    assert later == FlowOwner(sender.process, Attribution.SOCKET, True, container=CTR)
    FlowTable.own(state, later)
    assert attribute(state, SocketTable(T0, ()), LOCAL).attribution is Attribution.CACHED


def test_socket_and_packet_views_of_a_container_flow_merge_with_the_container() -> None:
    sender = entry(INSIDE, PEER, CTR, "ctrsender")
    table = SocketTable(T0, (sender,))
    socket_flows = SocketFlows().flows(table, T0)
    assert [f.container for f in socket_flows] == [CTR]
    state = packet_flow(INSIDE, PEER)
    FlowTable.own(state, attribute(state, table, LOCAL))
    packet_flows = attributed_flows([state], table, LOCAL)
    (merged,) = merge_flows(socket_flows, packet_flows)
    assert merged.container == CTR and merged.process == sender.process


_ports = st.integers(1, 65535)
_v4 = st.integers(0, 2**32 - 1).map(lambda n: parse_ip(str(parse_ip("0.0.0.0") + n)))


@given(
    st.lists(st.tuples(_v4, _ports, _v4, _ports, st.booleans()), max_size=12),
    _v4,
    _ports,
    _v4,
    _ports,
)
def test_contained_lookups_only_answer_with_a_socket_on_one_end(
    sockets: list[tuple[object, int, object, int, bool]],
    a_ip: object,
    a_port: int,
    b_ip: object,
    b_port: int,
) -> None:
    entries = tuple(
        entry(
            Endpoint(li, lp),  # type: ignore[arg-type]  # addresses from the strategy
            Endpoint(ri, rp),  # type: ignore[arg-type]
            CTR if inside else None,
            "p",
        )
        for li, lp, ri, rp, inside in sockets
    )
    table = SocketTable(T0, entries)
    a, b = Endpoint(a_ip, a_port), Endpoint(b_ip, b_port)  # type: ignore[arg-type]
    found = contained_owner(table, Transport.TCP, a, b)
    if found is not None:
        e, initiated = found
        assert e.container is not None
        assert (e.key.local, e.key.remote) == ((a, b) if initiated else (b, a))


def test_a_masqueraded_flow_and_its_container_socket_are_one_flow() -> None:
    """Capture sees the connection under the host's address, the container's socket under
    its own: joined through the translation, they are one flow (not the bytes twice)."""
    sender = entry(INSIDE, PEER, CTR, "ctrsender")
    original, translated = (Transport.TCP, INSIDE, PEER), (Transport.TCP, OUTSIDE, PEER)
    table = SocketTable(T0, (sender,), nat=((original, translated),))
    socket_flows = SocketFlows().flows(table, T0)
    state = packet_flow(OUTSIDE, PEER)
    FlowTable.own(state, attribute(state, table, LOCAL))
    packet_flows = attributed_flows([state], table, LOCAL)
    assert len(merge_flows(socket_flows, packet_flows)) == 2  # without the translations
    (one,) = merge_flows(socket_flows, packet_flows, translated=table.translated)
    assert one.key.local == OUTSIDE and one.container == CTR
    assert one.process == sender.process and one.state == "ESTABLISHED"


def test_directions_are_judged_by_each_namespace_s_own_listeners() -> None:
    """A container listening on 0.0.0.0:50000 does not make the host's connection from its
    ephemeral port 50000 an accepted one, nor the host's listener a container's."""
    listener = entry(ep("0.0.0.0", 50000), None, CTR, "server", state="LISTEN")
    host_client = entry(ep("192.0.2.1", 50000), PEER, None, "curl")
    host_listener = entry(ep("0.0.0.0", 8080), None, None, "web", state="LISTEN")
    ctr_client = entry(ep("172.17.0.2", 8080), PEER, CTR, "ctrsender")
    accepted = entry(ep("172.17.0.2", 50000), PEER, CTR, "server")
    table = SocketTable(T0, (listener, host_client, host_listener, ctr_client, accepted))
    flows = {f.process.name if f.process else "": f for f in SocketFlows().flows(table, T0)}
    assert flows["curl"].direction is Direction.OUTBOUND
    assert flows["ctrsender"].direction is Direction.OUTBOUND
    served = [f for f in SocketFlows().flows(table, T0) if f.key == accepted.key]
    assert [f.direction for f in served] == [Direction.INBOUND]


def udp_entry(local: Endpoint, container: Container, name: str) -> SocketEntry:
    return SocketEntry(
        FlowKey(Transport.UDP, local, None),
        None,
        Direction.UNKNOWN,
        process=make_process(name),
        inode=hash((local, name)) & 0xFFFFFF,
        container=container,
    )


def udp_flow(src: Endpoint, dst: Endpoint) -> FlowState:
    return FlowTable().ingest(PacketMeta(T0, Transport.UDP, src, dst, 80, b"", ip_proto=17))


CLIENT = ep("198.51.100.7", 40000)
DNS_HOME = ep("172.17.0.2", 53)


def test_a_container_s_wildcard_udp_server_owns_flows_to_its_own_addresses() -> None:
    """A DNS server in a container bound to 0.0.0.0:53 (pi-hole and friends): the flow to
    the container's address is its own, known from the namespace's addresses (`homes`)."""
    server = udp_entry(ep("0.0.0.0", 53), CTR, "dnsmasq")
    other = udp_entry(ep("0.0.0.0", 53), OTHER, "unbound")
    homes = ((CTR.netns, (DNS_HOME.ip,)), (OTHER.netns, (parse_ip("172.18.0.2"),)))
    table = SocketTable(T0, (server, other), homes=homes)
    assert table.lookup_contained(Transport.UDP, DNS_HOME, CLIENT) is server
    assert table.lookup_contained(Transport.UDP, ep("172.18.0.2", 53), CLIENT) is other
    owner = attribute(udp_flow(CLIENT, DNS_HOME), table, LOCAL)
    assert owner == FlowOwner(server.process, Attribution.SOCKET, False, container=CTR)
    # No home for the address, or no homes at all: not any container's (the old answer).
    assert table.lookup_contained(Transport.UDP, ep("10.9.9.9", 53), CLIENT) is None
    assert SocketTable(T0, (server,)).lookup_contained(Transport.UDP, DNS_HOME, CLIENT) is None
    # Another port at the home: not the server's.
    assert table.lookup_contained(Transport.UDP, ep("172.17.0.2", 54), CLIENT) is None


def test_an_address_two_namespaces_claim_is_nobody_s_home() -> None:
    """Two namespaces with one address (isolated labs, or a stale listing): a guess either
    way could name the wrong container, so neither is taken."""
    server = udp_entry(ep("0.0.0.0", 53), CTR, "dnsmasq")
    other = udp_entry(ep("0.0.0.0", 53), OTHER, "unbound")
    homes = ((CTR.netns, (DNS_HOME.ip,)), (OTHER.netns, (DNS_HOME.ip,)))
    table = SocketTable(T0, (server, other), homes=homes)
    assert table.lookup_contained(Transport.UDP, DNS_HOME, CLIENT) is None


def test_a_dual_stack_wildcard_serves_a_home_s_ipv4_address() -> None:
    server = udp_entry(ep("::", 53), CTR, "dnsmasq")
    table = SocketTable(T0, (server,), homes=((CTR.netns, (DNS_HOME.ip,)),))
    assert table.lookup_contained(Transport.UDP, DNS_HOME, CLIENT) is server


def test_a_reread_table_keeps_finding_the_wildcard_server_read_again() -> None:
    """`SocketTable.reread` carries the wildcard index over with the re-read entry in its
    old entry's place, and the homes with it."""
    server = udp_entry(ep("0.0.0.0", 53), CTR, "dnsmasq")
    homes = ((CTR.netns, (DNS_HOME.ip,)),)
    table = SocketTable(T0, (server,), homes=homes)
    assert table.lookup_contained(Transport.UDP, DNS_HOME, CLIENT) is server
    again = SocketEntry(
        server.key,
        server.state,
        server.direction,
        process=server.process,
        inode=server.inode,
        container=CTR,
        bytes_received=900,
    )
    later = table.reread(T0 + 1, (again,), homes=homes)
    assert later.lookup_contained(Transport.UDP, DNS_HOME, CLIENT) is again
    moved = table.reread(T0 + 1, (again,), homes=())
    assert moved.lookup_contained(Transport.UDP, DNS_HOME, CLIENT) is None


@given(
    st.lists(
        st.tuples(
            st.integers(min_value=1, max_value=4),
            st.lists(st.sampled_from(["172.17.0.2", "172.17.0.3", "fd00::2"]), max_size=3),
        ),
        max_size=4,
    ),
    st.sampled_from(["172.17.0.2", "172.17.0.3", "fd00::2", "10.0.0.1"]),
)
def test_a_wildcard_server_answers_only_for_its_own_namespace_s_address(
    homes_spec: list[tuple[int, list[str]]], address: str
) -> None:
    servers = [
        udp_entry(ep("::", 53), Container(netns=n, name=f"c{n}", runtime="netns"), f"s{n}")
        for n in range(1, 5)
    ]
    homes = tuple((n, tuple(parse_ip(a) for a in addrs)) for n, addrs in homes_spec)
    table = SocketTable(T0, tuple(servers), homes=homes)
    hit = table.lookup_contained(Transport.UDP, ep(address, 53), CLIENT)
    owners = {n for n, addrs in homes_spec if address in addrs}
    if len(owners) == 1:
        (n,) = owners
        assert hit is servers[n - 1]
    else:
        assert hit is None
