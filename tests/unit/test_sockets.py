"""The sampler against this machine's real sockets (loopback only, no root needed).

Each test opens its own sockets in this process or a child, samples, and finds them by
port. Both backends are checked where they overlap; byte counters only exist on netlink.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator

import psutil
import pytest

from netwatch.flows.attribution import assign_directions
from netwatch.flows.socket_flows import SocketFlows
from netwatch.model import (
    Direction,
    Endpoint,
    Flow,
    FlowKey,
    ProcessRef,
    SocketEntry,
    SocketTable,
    Transport,
)
from netwatch.sources.processes import PsutilReader
from netwatch.sources.sockets import SocketSampler

ME = os.getpid()
BACKENDS = ["netlink", "psutil"] if sys.platform.startswith("linux") else ["psutil"]


def by_port(
    table: SocketTable, port: int, transport: Transport = Transport.TCP
) -> list[SocketEntry]:
    return [
        e
        for e in table.entries
        if e.key.transport is transport
        and e.container is None  # other labs' namespaces may use the same port
        and (e.key.local.port == port or (e.key.remote is not None and e.key.remote.port == port))
    ]


def judged(table: SocketTable) -> SocketTable:
    """The table with each socket's direction as the engine judges it (`flows`): the sampler
    gives the kernel's view, where who initiated a socket is not yet known."""
    assert all(e.direction is Direction.UNKNOWN for e in table.entries)
    return SocketTable(taken_at=table.taken_at, entries=tuple(assign_directions(table.entries)))


@pytest.fixture
def tcp_pair(request: pytest.FixtureRequest) -> Iterator[tuple[socket.socket, ...]]:
    family = getattr(request, "param", socket.AF_INET)
    host = "127.0.0.1" if family == socket.AF_INET else "::1"
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.bind((host, 0))
    listener.listen()
    client = socket.create_connection((host, listener.getsockname()[1]), timeout=5)
    server, _ = listener.accept()
    client.sendall(b"a" * 3000)
    got = 0
    while got < 3000:
        got += len(server.recv(4096))
    server.sendall(b"b" * 700)
    assert client.recv(4096)  # the reply carries the ACK of our 3000 bytes
    yield listener, client, server
    for s in (client, server, listener):
        s.close()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("tcp_pair", [socket.AF_INET, socket.AF_INET6], indirect=True)
def test_tcp_listener_client_and_accepted_socket(
    backend: str, tcp_pair: tuple[socket.socket, ...]
) -> None:
    listener, client, _server = tcp_pair
    port = listener.getsockname()[1]
    family = listener.family
    table = judged(SocketSampler(backend=backend).sample())
    mine = by_port(table, port)
    assert len(mine) == 3
    directions = {e.direction: e for e in mine}
    assert set(directions) == {Direction.LISTEN, Direction.OUTBOUND, Direction.INBOUND}
    listen = directions[Direction.LISTEN]
    assert listen.state == "LISTEN" and listen.key.remote is None
    out = directions[Direction.OUTBOUND]
    assert out.key.local.port == client.getsockname()[1] and out.key.remote is not None
    assert out.key.remote.port == port and out.state == "ESTABLISHED"
    assert out.key.local.ip.version == (4 if family == socket.AF_INET else 6)
    for e in mine:
        assert e.process is not None and e.process.pid == ME
        assert e.process.name == psutil.Process().name()
        assert e.process.create_time == pytest.approx(psutil.Process().create_time())
        assert e.process.cmdline == tuple(psutil.Process().cmdline())
    if backend == "netlink":
        assert out.bytes_sent is not None and out.bytes_sent >= 3000
        assert out.bytes_received is not None and out.bytes_received >= 700
        inbound = directions[Direction.INBOUND]
        assert inbound.bytes_received is not None and inbound.bytes_received >= 3000
        assert out.segs_out is not None and out.segs_out >= 2


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("family", "host"), [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")]
)
def test_udp_unconnected_is_listen_connected_is_outbound(
    backend: str, family: int, host: str
) -> None:
    with (
        socket.socket(family, socket.SOCK_DGRAM) as server,
        socket.socket(family, socket.SOCK_DGRAM) as client,
    ):
        server.bind((host, 0))
        port = server.getsockname()[1]
        client.connect((host, port))
        table = judged(SocketSampler(backend=backend).sample())
    mine = by_port(table, port, Transport.UDP)
    assert len(mine) == 2
    listen = next(e for e in mine if e.key.remote is None)
    assert listen.direction is Direction.LISTEN and listen.key.local.port == port
    assert listen.key.local.ip == ipaddress.ip_address(host)
    conn = next(e for e in mine if e.key.remote is not None)
    assert conn.direction is Direction.OUTBOUND and conn.state == "ESTABLISHED"
    assert conn.key.remote is not None and conn.key.remote.port == port
    assert all(e.process is not None and e.process.pid == ME for e in mine)
    assert all(e.bytes_sent is None for e in mine)


def test_dual_stack_listener_accepts_ipv4_as_unmapped_inbound() -> None:
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as listener:
        listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        listener.bind(("::", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            server, _ = listener.accept()
            with server:
                table = judged(SocketSampler(backend="netlink").sample())
                cport = client.getsockname()[1]
    mine = by_port(table, port)
    inbound = [e for e in mine if e.direction is Direction.INBOUND]
    assert len(inbound) == 1
    assert inbound[0].key.local.ip == ipaddress.IPv4Address("127.0.0.1")  # ::ffff: unmapped
    assert inbound[0].key.remote is not None and inbound[0].key.remote.port == cport


def test_unchanged_sockets_reuse_their_entries(tcp_pair: tuple[socket.socket, ...]) -> None:
    # Scan counts depend on what else runs on the machine; tests/unit/test_sockets_owners.py
    # checks them on a fake /proc. Here: the same kernel socket gives the same entry object.
    listener, client, server = tcp_pair
    port = listener.getsockname()[1]
    sampler = SocketSampler(backend="netlink")
    first = {e.key: e for e in by_port(sampler.sample(), port)}
    second = {e.key: e for e in by_port(sampler.sample(), port)}
    assert first.keys() == second.keys() and len(first) == 3
    assert all(first[k] is second[k] for k in first)
    # New traffic changes the counters, and the cached entry is rebuilt with them.
    client.sendall(b"c" * 500)
    server.recv(4096)
    server.sendall(b"d")
    client.recv(16)
    third = {e.key: e for e in by_port(sampler.sample(), port)}
    out = next(e for e in third.values() if e.key.local.port == client.getsockname()[1])
    assert out.bytes_sent is not None and out.bytes_sent >= 3500
    assert out is not first[out.key] and out.process is first[out.key].process
    listen = next(e for e in third.values() if e.key.remote is None)
    assert listen is first[listen.key]
    # A new connection is a socket the cache has not seen: it is looked up and attributed.
    with socket.create_connection(("127.0.0.1", port), timeout=5) as extra:
        conn, _ = listener.accept()
        with conn:
            fourth = sampler.sample()
            eport = extra.getsockname()[1]
    new = [e for e in by_port(fourth, port) if e.key.local.port == eport]
    assert len(new) == 1 and new[0].process is not None and new[0].process.pid == ME
    assert new[0].direction is Direction.UNKNOWN  # judged from the whole table, in flows


class KillFirst:
    """psutil, except that the victim is killed just before its details are read."""

    def __init__(self, victim: subprocess.Popen[bytes]) -> None:
        self.victim = victim
        self.real = PsutilReader()
        self.calls: list[int] = []

    def read(self, pid: int) -> ProcessRef | None:
        self.calls.append(pid)
        if pid == self.victim.pid and self.victim.poll() is None:
            self.victim.kill()
            self.victim.wait(10)
        return self.real.read(pid)


HOLD = (
    "import socket,sys; s=socket.socket(); s.bind(('127.0.0.1',0)); s.listen(); "
    "print(s.getsockname()[1], flush=True); sys.stdin.read()"
)


@pytest.mark.parametrize("backend", BACKENDS)
def test_process_that_exits_mid_sample_is_skipped(backend: str) -> None:
    victim = subprocess.Popen(
        [sys.executable, "-c", HOLD], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert victim.stdout is not None
        vport = int(victim.stdout.readline())
        with socket.socket() as mine:
            mine.bind(("127.0.0.1", 0))
            mine.listen()
            reader = KillFirst(victim)
            table = SocketSampler(backend=backend, reader=reader).sample()
            my_port = mine.getsockname()[1]
    finally:
        victim.kill()
        victim.wait(10)
    assert victim.pid in reader.calls
    # The victim's socket may or may not still be listed; it never has a (wrong) process.
    for e in by_port(table, vport):
        assert e.process is None or e.process.pid != victim.pid
    (own,) = by_port(table, my_port)
    assert own.process is not None and own.process.pid == ME


def test_psutil_and_netlink_list_the_same_tcp_and_udp_endpoints() -> None:
    with socket.socket() as lst, socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as udp:
        lst.bind(("127.0.0.1", 0))
        lst.listen()
        udp.bind(("::1", 0))
        nl = judged(SocketSampler(backend="netlink").sample())
        ps = judged(SocketSampler(backend="psutil").sample())

    def keys(t: SocketTable) -> set[tuple[object, ...]]:
        return {
            (e.key, e.direction, e.process.pid if e.process else None)
            for e in t.entries
            if e.key.transport in (Transport.TCP, Transport.UDP) and e.state != "TIME_WAIT"
        }

    ours = {k for k in keys(nl) if k[2] == ME}
    assert ours and ours == {k for k in keys(ps) if k[2] == ME}


def test_status_as_root_misses_nothing() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    sampler = SocketSampler()
    sampler.sample()
    status = sampler.status()
    assert status.privileged and status.missing == ()


def test_raw_and_packet_sockets_are_listed_with_their_protocol() -> None:
    if os.geteuid() != 0:
        pytest.skip("raw and packet sockets need root (CAP_NET_RAW)")
    eth_p_ip = 0x0800
    with (
        socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as raw4,
        socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6) as raw6,
        socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(eth_p_ip)) as pkt,
    ):
        assert raw4 and raw6 and pkt
        table = SocketSampler(backend="netlink").sample()
    mine = {
        (e.key.transport, e.key.local.ip.version, e.key.local.port)
        for e in table.entries
        if e.process is not None and e.process.pid == ME
    }
    assert (Transport.RAW, 4, socket.IPPROTO_ICMP) in mine
    assert (Transport.RAW, 6, socket.IPPROTO_ICMPV6) in mine
    assert (Transport.PACKET, 4, eth_p_ip) in mine


def test_psutil_backend_says_byte_counters_are_missing() -> None:
    sampler = SocketSampler(backend="psutil")
    sampler.sample()
    assert sampler.backend == "psutil"
    assert any("byte counters" in line for line in sampler.status().missing)


SWAP = """
import socket, sys
a = socket.socket(); a.bind(("127.0.0.1", 0)); a.listen()
print(a.getsockname()[1], a.fileno(), flush=True)
sys.stdin.readline()
a.close()
b = socket.socket(); b.bind(("127.0.0.1", 0)); b.listen()
print(b.getsockname()[1], b.fileno(), flush=True)
sys.stdin.read()
"""


def test_socket_reopened_on_the_same_fd_is_attributed_at_once() -> None:
    # The fd count stays the same, so only knowing that this process closed a socket tells
    # the cache to look at it again.
    child = subprocess.Popen(
        [sys.executable, "-c", SWAP], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdin is not None and child.stdout is not None
        port_a, fd_a = (int(x) for x in child.stdout.readline().split())
        sampler = SocketSampler(backend="netlink")
        (a,) = by_port(sampler.sample(), port_a)
        assert a.process is not None and a.process.pid == child.pid
        child.stdin.write("swap\n")
        child.stdin.flush()
        port_b, fd_b = (int(x) for x in child.stdout.readline().split())
        assert fd_b == fd_a
        table = sampler.sample()
        assert by_port(table, port_a) == []
        (b,) = by_port(table, port_b)
        assert b.process is not None and b.process.pid == child.pid
    finally:
        child.kill()
        child.wait(10)


def test_a_closed_listener_reclassifies_reused_flows_once() -> None:
    # The accepted socket is unchanged in the kernel (the sampler keeps its entry), but
    # without its listener it can no longer be told apart from one this machine initiated;
    # the flows stage must re-judge it and then keep the re-judged flow for later samples.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port), timeout=5)
    server, _ = listener.accept()
    try:
        sampler, socket_flows = SocketSampler(backend="netlink"), SocketFlows()

        def accepted() -> tuple[SocketEntry, Flow]:
            table = sampler.sample()
            flows = socket_flows.flows(table, table.taken_at)
            ((entry, flow),) = [
                (e, f)
                for e, f in zip(table.entries, flows, strict=True)
                if e.key.local.port == port and e.key.remote
            ]
            return entry, flow

        entry, before = accepted()
        assert before.direction is Direction.INBOUND
        listener.close()
        same, after = accepted()
        assert same is entry and after.direction is Direction.OUTBOUND
        assert after.first_seen == before.first_seen and after.key is before.key
        assert accepted()[1] is after
    finally:
        for s in (client, server, listener):
            s.close()


def _active(entry: SocketEntry) -> tuple[Transport, Endpoint, Endpoint]:
    assert entry.key.remote is not None
    return entry.key.transport, entry.key.local, entry.key.remote


def test_refresh_rereads_only_the_named_sockets(tcp_pair: tuple[socket.socket, ...]) -> None:
    listener, client, server = tcp_pair
    port = listener.getsockname()[1]
    sampler = SocketSampler(backend="netlink")
    first = sampler.sample()
    out = next(e for e in by_port(first, port) if e.key.local.port == client.getsockname()[1])
    inbound = next(e for e in by_port(first, port) if e.key.local.port == port and e.key.remote)
    assert sampler.refresh([]) is first  # nothing had packets: the very same table
    client.sendall(b"e" * 2000)
    got = 0
    while got < 2000:
        got += len(server.recv(4096))
    server.sendall(b"f")
    client.recv(16)
    second = sampler.refresh([_active(out)])
    again = next(e for e in by_port(second, port) if e.key == out.key)
    assert again is not out and again.bytes_sent == out.bytes_sent + 2000  # type: ignore[operator]
    assert again.process is out.process and again.key is out.key
    # The accepted side was not asked about: it keeps last sample's entry and counters.
    assert next(e for e in by_port(second, port) if e.key == inbound.key) is inbound
    kept = {id(e) for e in second.entries}
    tcp = [e for e in first.entries if e.key.transport is Transport.TCP and e is not out]
    assert all(id(e) in kept for e in tcp)  # every other socket: last sample's very entry
    # A full sample agrees with what the refresh read.
    full = sampler.sample()
    assert next(e for e in by_port(full, port) if e.key == inbound.key).bytes_received == (
        inbound.bytes_received + 2000  # type: ignore[operator]
    )


def test_a_refresh_in_place_keeps_the_position_map_and_the_next_still_rereads(
    tcp_pair: tuple[socket.socket, ...],
) -> None:
    """Re-reading sockets in place (none gone, none new) leaves every TCP record where it
    was, so the map of where each is carries over (not rebuilt by hashing every key), and
    a later refresh still finds and re-reads the same socket through it."""
    listener, client, server = tcp_pair
    port = listener.getsockname()[1]
    sampler = SocketSampler(backend="netlink")
    first = sampler.sample()
    out = next(e for e in by_port(first, port) if e.key.local.port == client.getsockname()[1])
    sent = out.bytes_sent or 0
    positions = None
    for n in (1, 2):
        client.sendall(b"g" * 1000)
        got = 0
        while got < 1000:
            got += len(server.recv(4096))
        server.sendall(b"h")  # its reply carries the ack the client's counter counts
        client.recv(16)
        table = sampler.refresh([_active(out)])
        assert sampler._last is not None
        if positions is None:
            positions = sampler._last._positions
            assert positions is not None  # built by the first refresh, in place
        assert sampler._last._positions is positions  # carried, not rebuilt
        again = next(e for e in by_port(table, port) if e.key == out.key)
        assert again.bytes_sent is not None and again.bytes_sent >= sent + 1000 * n


def test_refresh_finds_new_connections_and_drops_closed_ones() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    sampler = SocketSampler(backend="netlink")
    sampler.sample()
    client = socket.create_connection(("127.0.0.1", port), timeout=5)
    server, _ = listener.accept()
    here, there = client.getsockname(), server.getsockname()
    local = Endpoint(ipaddress.ip_address(here[0]), here[1])
    remote = Endpoint(ipaddress.ip_address(there[0]), there[1])
    try:
        both = [(Transport.TCP, local, remote), (Transport.TCP, remote, local)]
        table = sampler.refresh(both)
        new = [e for e in by_port(judged(table), port) if e.key.remote is not None]
        assert {e.direction for e in new} == {Direction.OUTBOUND, Direction.INBOUND}
        assert all(e.process is not None and e.process.pid == ME for e in new)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()  # a reset: both ends are gone at once, no TIME_WAIT
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            table = sampler.refresh(
                [(Transport.TCP, local, remote), (Transport.TCP, remote, local)]
            )
            left = [e for e in by_port(table, port) if e.key.remote is not None]
            if all(e.state != "ESTABLISHED" for e in left):
                break
            time.sleep(0.05)
        assert not any(e.key == FlowKey(Transport.TCP, local, remote) for e in table.entries)
    finally:
        for s in (client, server, listener):
            s.close()


def test_refresh_without_a_sample_or_netlink_is_a_full_sample() -> None:
    sampler = SocketSampler(backend="psutil")
    assert sampler.refresh([]).entries  # psutil: always a full sample
    fresh = SocketSampler(backend="netlink")
    assert fresh.refresh([]).entries  # nothing to refresh from yet


def test_refresh_finds_a_new_udp_socket_connected_or_not() -> None:
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sampler = SocketSampler(backend="netlink")
    sampler.sample()
    connected = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    loose = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        connected.connect(sink.getsockname())
        connected.send(b"vpn?")
        loose.sendto(b"dns?", sink.getsockname())
        there = Endpoint(ipaddress.ip_address("127.0.0.1"), sink.getsockname()[1])
        ends = [
            Endpoint(ipaddress.ip_address("127.0.0.1"), s.getsockname()[1])
            for s in (connected, loose)
        ]
        table = sampler.refresh([(Transport.UDP, here, there) for here in ends])
        for here in ends:
            entry = table.lookup(Transport.UDP, here, there)
            assert entry is not None and entry.process is not None and entry.process.pid == ME
        assert table.lookup(Transport.UDP, ends[0], there).key.remote == there  # type: ignore[union-attr]
    finally:
        for s in (connected, loose, sink):
            s.close()


def test_refresh_does_not_ask_every_tick_about_a_conversation_without_a_socket() -> None:
    # Traffic to this host whose socket lives in another namespace (a container's
    # published port) would otherwise cost kernel requests on every tick.
    from tests.clock import FakeClock

    clock = FakeClock()
    sampler = SocketSampler(backend="netlink", clock=clock)
    sampler.sample()
    asked: list[object] = []
    diag = sampler._diag
    assert diag is not None
    real_find = diag.find

    def counting_find(*args: object, **kwargs: object) -> object:
        asked.append(args)
        return real_find(*args, **kwargs)  # type: ignore[arg-type]

    diag.find = counting_find  # type: ignore[method-assign]
    ghost = (
        Transport.TCP,
        Endpoint(ipaddress.ip_address("127.0.0.1"), 1),
        Endpoint(ipaddress.ip_address("127.0.0.1"), 2),
    )
    sampler.refresh([ghost])
    sampler.refresh([ghost])
    assert len(asked) == 1
    clock.advance(3.5)
    sampler.refresh([ghost])
    assert len(asked) == 2
    sampler.sample()  # a full sample forgets what it did not find
    sampler.refresh([ghost])
    assert len(asked) == 3


def test_rereading_many_sockets_at_once_reads_each_as_one_at_a_time() -> None:
    """`reread_many` sends its requests a chunk a write; more sockets than a chunk, one of
    them closed, give what `reread` gives one by one (nothing moves meanwhile)."""
    from netwatch.sources import netlink

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = listener.getsockname()[1]
    clients = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(40)]
    servers = [listener.accept()[0] for _ in clients]
    diag = netlink.DiagSocket()
    try:
        mine = {c.getsockname()[1] for c in clients}
        records = [
            r
            for r in diag.dump(socket.AF_INET, socket.IPPROTO_TCP)
            if netlink.DiagRecord._make(r).sport in mine
            and netlink.DiagRecord._make(r).dport == port  # other programs use ports too
        ]
        assert len(records) == 40 > netlink.REREAD_CHUNK
        closing = next(
            c for c in clients if c.getsockname()[1] == records[5][2][0] * 256 + records[5][2][1]
        )
        closing.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        closing.close()  # a reset: gone at once
        wanted = [(r[0], r[2]) for r in records]
        one_by_one = [diag.reread(family, ident) for family, ident in wanted]
        assert one_by_one[5] is None and all(
            r is not None for i, r in enumerate(one_by_one) if i != 5
        )
        assert diag.reread_many(wanted) == one_by_one
    finally:
        diag.close()
        for s in (*clients, *servers, listener):
            s.close()


def test_a_refresh_patched_in_place_keeps_what_the_table_worked_out(
    tcp_pair: tuple[socket.socket, ...],
) -> None:
    """A refresh that re-read sockets in place carries the last table's lookup index (a
    UDP conversation asks for it) and owners' pids over, with the new entries in it; they
    answer as a table indexed afresh does."""
    listener, client, server = tcp_pair
    port = listener.getsockname()[1]
    sampler = SocketSampler(backend="netlink")
    first = sampler.sample()
    out = next(e for e in by_port(first, port) if e.key.local.port == client.getsockname()[1])
    assert first.lookup(*_active(out)) is out  # the index is built
    pids = first.owner_pids()
    client.sendall(b"i" * 800)
    server.recv(4096)
    server.sendall(b"j")
    client.recv(16)
    second = sampler.refresh([_active(out)])
    assert sampler.patched(second) is not None
    assert second._by_pair is not None and second.owner_pids() is pids  # carried
    fresh = SocketTable(taken_at=second.taken_at, entries=second.entries)
    for e in second.entries:
        ends = (e.key.transport, e.key.local, e.key.remote)
        assert second.lookup(*ends) is fresh.lookup(*ends)
    again = second.lookup(*_active(out))
    assert (
        again is not out and again is not None and again.bytes_sent == (out.bytes_sent or 0) + 800
    )


def test_replies_lost_to_a_full_receive_buffer_fail_the_reread_and_leave_nothing_behind() -> None:
    """Replies that do not fit the receive buffer are dropped by the kernel (ENOBUFS): the
    re-read fails (the sampler then takes a full sample) and the replies that did arrive
    are not read by the next request as its own."""
    from netwatch.sources import netlink

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    clients = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(40)]
    servers = [listener.accept()[0] for _ in clients]
    diag = netlink.DiagSocket()
    try:

        def mine() -> list[netlink.Record]:
            return [
                r
                for r in diag.dump(socket.AF_INET, socket.IPPROTO_TCP)
                if netlink.DiagRecord._make(r).dport == port
            ]

        records = mine()
        assert len(records) == 40
        diag._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)  # the kernel's least
        with pytest.raises(netlink.NetlinkUnavailableError):
            diag.reread_many([(r[0], r[2]) for r in records])
        diag._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        assert sorted(r[2] for r in mine()) == sorted(r[2] for r in records)
    finally:
        diag.close()
        for s in (*clients, *servers, listener):
            s.close()
