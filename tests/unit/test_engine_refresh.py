"""Between full socket samples the engine re-reads only the connections capture saw.

The sockets are real (loopback, this process) and so is the sampler; the packet stage is
a stand-in that reports which connections had packets, as capture would (capture itself is
tested live in tests/live). Time is a fake clock, moved by hand.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator, Sequence

import pytest

from netwatch.model import Counters, Endpoint, Flow, FlowKey, SocketTable, Transport, parse_ip
from netwatch.pipeline import Engine
from netwatch.sources.sockets import SocketSampler
from tests.clock import FakeClock


class SeenPackets:
    """Reports the (local, remote) pairs it is told had packets, and the drops it is told."""

    def __init__(self) -> None:
        self.pairs: list[tuple[Transport, Endpoint, Endpoint]] = []
        self.drops = 0

    def flows(self, table: SocketTable, now: float, serials: object = None) -> Sequence[Flow]:
        return ()

    def counters(self) -> Counters:
        return Counters(capture_drops=self.drops)

    def active(self) -> list[tuple[Transport, Endpoint, Endpoint]]:
        out, self.pairs = self.pairs, []
        return out


def _end(addr: tuple[str, int]) -> Endpoint:
    return Endpoint(parse_ip(addr[0]), addr[1])


@pytest.fixture
def conn() -> Iterator[tuple[socket.socket, socket.socket, socket.socket]]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    client = socket.create_connection(listener.getsockname(), timeout=5)
    server, _ = listener.accept()
    yield listener, client, server
    for s in (client, server, listener):
        s.close()


def _exchange(client: socket.socket, server: socket.socket, n: int) -> None:
    client.sendall(b"g" * n)
    got = 0
    while got < n:
        got += len(server.recv(65536))
    server.sendall(b"h")
    client.recv(16)


def _sent(snap_flows: Sequence[object], key: FlowKey) -> int | None:
    for ef in snap_flows:
        flow = ef.flow  # type: ignore[attr-defined]
        if flow.key == key:
            return flow.bytes_sent  # type: ignore[no-any-return]
    return None


def _key(s: socket.socket) -> FlowKey:
    return FlowKey(Transport.TCP, _end(s.getsockname()), _end(s.getpeername()))


def _started(
    client: socket.socket, full_every: float = 0.0
) -> tuple[FakeClock, SeenPackets, Engine, int]:
    """An engine on the real sampler after its first tick, and the client's bytes sent then."""
    clock, packets = FakeClock(), SeenPackets()
    sampler = SocketSampler(backend="netlink")
    engine = Engine(sampler, clock, packets=packets, full_every=full_every)
    before = _sent(engine.tick().flows, _key(client))
    assert before is not None
    return clock, packets, engine, before


def test_active_connections_are_reread_and_listeners_wait_for_the_full_sample(
    conn: tuple[socket.socket, socket.socket, socket.socket],
) -> None:
    _, client, server = conn
    clock, packets, engine, before = _started(client, full_every=10)
    late = socket.socket()
    late.bind(("127.0.0.1", 0))
    late.listen()
    try:
        _exchange(client, server, 3000)
        clock.advance(1)
        packets.pairs = [(Transport.TCP, _end(client.getsockname()), _end(client.getpeername()))]
        flows = engine.tick().flows
        assert _sent(flows, _key(client)) == before + 3000
        listening = {ef.flow.key.local.port for ef in flows if ef.flow.key.remote is None}
        assert late.getsockname()[1] not in listening  # no packets: waits for a full sample
        clock.advance(9)
        flows = engine.tick().flows
        listening = {ef.flow.key.local.port for ef in flows if ef.flow.key.remote is None}
        assert late.getsockname()[1] in listening
    finally:
        late.close()


def test_lost_packets_make_the_next_tick_a_full_sample(
    conn: tuple[socket.socket, socket.socket, socket.socket],
) -> None:
    _, client, server = conn
    clock, packets, engine, before = _started(client, full_every=60)
    _exchange(client, server, 1000)
    clock.advance(1)
    packets.drops = 5  # capture lost packets: their connections cannot be named
    assert _sent(engine.tick().flows, _key(client)) == before  # the tick that counts the drop
    clock.advance(1)
    assert _sent(engine.tick().flows, _key(client)) == before + 1000  # and then a full one


def test_without_full_every_each_tick_is_a_full_sample(
    conn: tuple[socket.socket, socket.socket, socket.socket],
) -> None:
    _, client, server = conn
    clock, _, engine, before = _started(client)
    _exchange(client, server, 500)
    clock.advance(1)
    assert _sent(engine.tick().flows, _key(client)) == before + 500
