"""The socket server and DaemonFeed in-process: fan-out, slow clients resynced, reconnects."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netwatch import codec, files
from netwatch.daemon.client import DaemonFeed
from netwatch.daemon.notify import Notifier
from netwatch.daemon.server import PEER_BURST, PEER_RATE, SnapshotServer, socket_answers
from netwatch.errors import NetwatchError
from netwatch.model import EnrichedFlow, Snapshot
from netwatch.stream import StreamDecoder, StreamEncoder
from tests.builders import make_alert, make_flow, make_snapshot
from tests.daemon.harness import STORM

pytestmark = pytest.mark.timeout(60)


def _flows(n: int, rev: int = 1) -> tuple[EnrichedFlow, ...]:
    """`n` numbered flows at revision `rev` (their server name says which)."""
    return tuple(
        _numbered(make_flow(local_port=1000 + i, sni=f"rev{rev}.example"), i + 1, rev)
        for i in range(n)
    )


def _numbered(ef: EnrichedFlow, serial: int, rev: int) -> EnrichedFlow:
    return replace(ef, flow=replace(ef.flow, serial=serial, rev_facts=rev))


def _line(seq: int, flows: int = 1) -> bytes:
    """A stream of its own: one `state` line (what a greeting is)."""
    return codec.frame(StreamEncoder().encode(make_snapshot(seq, flows=_flows(flows))))


class _Daemon:
    """A stream as the service keeps one: a shared encoder, states on demand."""

    def __init__(self, server: SnapshotServer, first: Snapshot) -> None:
        self.encoder = StreamEncoder(stream="test")
        self.encoder.encode(first)
        self.server = server
        self.states = 0
        server.set_greeting(self.state)

    def state(self) -> bytes:
        self.states += 1
        return codec.frame(self.encoder.state())

    def tick(self, snap: Snapshot) -> None:
        self.server.broadcast(codec.frame(self.encoder.delta(snap)))


def _serve(server: SnapshotServer, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        server.poll(0.02)


def test_a_slow_client_is_resynced_never_dropped_and_a_fast_one_keeps_up(
    tmp_path: Path,
) -> None:
    server = SnapshotServer(tmp_path / "s.sock", max_buffer=256 * 1024)
    daemon = _Daemon(server, make_snapshot(0, flows=_flows(50)))
    slow = socket.socket(socket.AF_UNIX)
    slow.connect(str(tmp_path / "s.sock"))  # does not read, for now
    fast = DaemonFeed(tmp_path / "s.sock")
    got: list[Snapshot] = []

    def read() -> None:
        for snap in fast.snapshots():
            got.append(snap)
            if snap.seq == 40:
                return

    reader = threading.Thread(target=read)
    reader.start()
    _serve(server, 0.5)
    assert server.clients == 2
    started = time.monotonic()
    for seq in range(1, 41):
        daemon.tick(make_snapshot(seq, flows=_flows(50, rev=seq + 1)))  # every flow changed
        _serve(server, 0.02)
    assert time.monotonic() - started < 10  # never waited for the slow reader
    reader.join(10)
    seqs = [s.seq for s in got]
    assert seqs == sorted(set(seqs)) and seqs[-1] == 40  # in order, the newest last
    assert got[-1].flows == _flows(50, rev=41)
    assert fast.resyncs == 0 and fast.bad_lines == 0
    assert server.resyncs >= 1  # the slow one fell behind: a fresh state, not a drop
    assert server.clients == 2
    # What the slow client was sent is still one whole stream, ending at the newest tick.
    slow.setblocking(False)
    frames, decoder, newest = codec.FrameReader(), StreamDecoder(), -1
    deadline = time.monotonic() + 10
    while newest != 40 and time.monotonic() < deadline:
        server.poll(0.02)
        with contextlib.suppress(BlockingIOError):
            for record in frames.feed(slow.recv(1 << 20)):
                decoder.apply(record)  # a resync never cuts a frame: nothing raises
                newest = decoder.snapshot().seq
    assert newest == 40 and frames.bad == 0
    assert decoder.snapshot().flows == _flows(50, rev=41)
    fast.close()
    server.close()
    slow.close()
    assert not (tmp_path / "s.sock").exists()


def _greeted(
    tmp_path: Path, greeting: Snapshot
) -> tuple[SnapshotServer, _Daemon, DaemonFeed, Iterator[Snapshot], Snapshot]:
    """A server whose stream starts at `greeting`, a feed attached, and its first snapshot."""
    server = SnapshotServer(tmp_path / "s.sock")
    daemon = _Daemon(server, greeting)
    feed = DaemonFeed(tmp_path / "s.sock")
    it = feed.snapshots()
    serving = threading.Thread(target=_serve, args=(server, 1.0))
    serving.start()
    first = next(it)
    serving.join()
    return server, daemon, feed, it, first


def test_new_client_is_greeted_with_latest_state(tmp_path: Path) -> None:
    greeting = make_snapshot(7, flows=_flows(3), alerts=(make_alert(),))
    server, _, feed, _, first = _greeted(tmp_path, greeting)
    assert first == greeting
    feed.close()
    server.close()


def test_a_client_that_connects_before_the_first_tick_is_greeted_by_it(tmp_path: Path) -> None:
    server = SnapshotServer(tmp_path / "s.sock")
    encoder = StreamEncoder()
    server.set_greeting(lambda: codec.frame(encoder.state()) if encoder.started else None)
    client = socket.socket(socket.AF_UNIX)
    client.connect(str(tmp_path / "s.sock"))
    _serve(server, 0.2)  # accepted; nothing to greet with yet
    server.broadcast(codec.frame(encoder.delta(make_snapshot(1, flows=_flows(2)))))
    _serve(server, 0.2)
    server.broadcast(codec.frame(encoder.delta(make_snapshot(2, flows=_flows(2, rev=2)))))
    _serve(server, 0.2)
    client.settimeout(5)
    lines = client.makefile("rb")
    decoder = StreamDecoder()
    assert decoder.decode(json.loads(lines.readline())).seq == 1  # the state, not a delta
    assert decoder.decode(json.loads(lines.readline())).flows == _flows(2, rev=2)
    client.close()
    server.close()


def test_feed_reconnects_after_daemon_restart(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    feed = DaemonFeed(path, backoff=0.05, max_backoff=0.1)
    got: list[int] = []

    def read() -> None:
        for snap in feed.snapshots():
            got.append(snap.seq)

    reader = threading.Thread(target=read)
    reader.start()
    time.sleep(0.3)  # feed retries while nothing listens
    assert "not reachable" in feed.status
    for generation in (1, 2):
        server = SnapshotServer(path)
        deadline = time.monotonic() + 10
        while server.clients == 0 and time.monotonic() < deadline:
            server.poll(0.05)
        server.broadcast(_line(generation))
        _serve(server, 0.3)
        server.close()
    feed.close()
    reader.join(5)
    assert not reader.is_alive()
    assert got == [1, 2]
    assert feed.connects == 2


def test_feed_skips_garbage_lines(tmp_path: Path) -> None:
    server = SnapshotServer(tmp_path / "s.sock")
    feed = DaemonFeed(tmp_path / "s.sock", max_attempts=1)
    it = feed.snapshots()
    t = threading.Thread(target=lambda: (
        [server.poll(0.05) for _ in range(10)],
        server.broadcast(b"not json\n{\"schema\":99}\n" + _line(5)),
        _serve(server, 0.5),
    ))  # fmt: skip
    t.start()
    assert next(it).seq == 5
    t.join()
    assert feed.bad_lines == 2
    feed.close()
    server.close()


def test_close_stops_a_feed_that_waits_for_data(tmp_path: Path) -> None:
    server = SnapshotServer(tmp_path / "s.sock")
    feed = DaemonFeed(tmp_path / "s.sock")
    done = threading.Event()

    def read() -> None:
        for _ in feed.snapshots():
            pass
        done.set()

    threading.Thread(target=read, daemon=True).start()
    _serve(server, 0.3)
    feed.close()
    assert done.wait(2)
    server.close()


def test_feed_gives_up_after_max_attempts(tmp_path: Path) -> None:
    feed = DaemonFeed(tmp_path / "none.sock", backoff=0.01, max_attempts=3)
    assert list(feed.snapshots()) == []
    assert "not reachable" in feed.status


def test_socket_in_use_is_refused_and_stale_one_replaced(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    server = SnapshotServer(path)
    assert socket_answers(path)
    with pytest.raises(NetwatchError, match="already serving"):
        SnapshotServer(path)
    server.close()
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))  # left behind by a killed daemon
    stale.close()
    assert not socket_answers(path)
    SnapshotServer(path).close()


def test_only_the_default_socket_folder_is_made(tmp_path: Path) -> None:
    named = tmp_path / "missing" / "dir" / "s.sock"
    with pytest.raises(NetwatchError, match=f"no directory {named.parent}$"):
        SnapshotServer(named)
    assert not (tmp_path / "missing").exists()
    old = os.umask(0o077)
    try:
        default = SnapshotServer(tmp_path / "run" / "s.sock", make_dir=True)
    finally:
        os.umask(old)
    made = (tmp_path / "run").stat()
    # 0750 root:netwatch where that group exists (its members attach), else 0700: never
    # narrowed by the umask below the owner's rwx, never open to others.
    assert stat.S_IMODE(made.st_mode) in (0o750, 0o700)
    assert stat.S_IMODE(made.st_mode) & 0o700 == 0o700 and not made.st_mode & 0o007
    if stat.S_IMODE(made.st_mode) == 0o750:
        assert made.st_gid == files.group_id()
    default.close()


def test_an_accept_storm_is_refused_cheaply_while_ticks_and_an_attached_client_go_on(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.sock"
    server = SnapshotServer(path)
    greetings = 0

    def greet() -> bytes:
        nonlocal greetings
        greetings += 1
        return _line(0)

    server.set_greeting(greet)
    first = time.monotonic()
    watcher = socket.socket(socket.AF_UNIX)
    watcher.connect(str(path))
    lines = watcher.makefile("rb")
    _serve(server, 0.2)
    storm_seconds, interval = 3.0, 0.1
    storm = subprocess.Popen(
        [sys.executable, "-c", STORM, str(path), str(storm_seconds)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    started = time.monotonic()
    ticks: list[float] = []
    next_tick = started
    while storm.poll() is None and time.monotonic() - started < 30:
        now = time.monotonic()
        if now >= next_tick:  # the daemon loop's shape: tick when due, else serve clients
            ticks.append(now)
            server.broadcast(_line(len(ticks)))
            next_tick += interval
        server.poll(min(next_tick - now, interval))
    elapsed = time.monotonic() - started
    out, _ = storm.communicate(timeout=10)
    _serve(server, 0.3)
    served = time.monotonic() - first
    watcher.settimeout(5)
    got = [json.loads(lines.readline())["seq"] for _ in range(len(ticks) + 1)]
    server.close()
    watcher.close()

    assert int(out.split()[0]) > 3 * (PEER_BURST + PEER_RATE * elapsed)  # the storm was one
    # Only a peer's burst and rate got a greeting (the watcher is the same uid as the storm).
    assert greetings <= PEER_BURST + PEER_RATE * served
    assert server.refused > 0
    assert got == list(range(len(ticks) + 1))  # greeting, then every tick's line in order
    gaps = [b - a for a, b in zip(ticks, ticks[1:], strict=False)]
    assert len(ticks) >= 0.5 * elapsed / interval
    assert max(gaps) < interval + 0.5, max(gaps)


# A server that runs out of file descriptors after a client or two, polled for 1.5 s.
FD_STARVED = r"""
import os, resource, sys, time
from pathlib import Path
from netwatch.daemon.server import SnapshotServer
server = SnapshotServer(Path(sys.argv[1]))
used, hard = len(os.listdir("/proc/self/fd")), resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (used + 2, hard))
print("ready", flush=True)
polls, end = 0, time.monotonic() + 1.5
while time.monotonic() < end:
    server.poll(0.05)
    polls += 1
print(server.clients, polls, flush=True)
"""


def test_running_out_of_descriptors_rests_the_listener_instead_of_crashing_or_spinning(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.sock"
    proc = subprocess.Popen(
        [sys.executable, "-c", FD_STARVED, str(path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    clients = [socket.socket(socket.AF_UNIX) for _ in range(6)]
    for c in clients:
        c.connect(str(path))  # queued in the backlog whether accepted or not
    out, err = proc.communicate(timeout=30)
    for c in clients:
        c.close()
    assert proc.returncode == 0, err
    accepted, polls = (int(x) for x in out.split())
    assert 0 < accepted < 6
    assert polls < 200  # ~30 polls of 50 ms; a listener left readable returns at once
    assert err.count("cannot accept clients: Too many open files") == 1, err


def test_notifier_sends_to_abstract_and_path_sockets(tmp_path: Path) -> None:
    for addr in (str(tmp_path / "notify"), "@nwdmn-test-notify"):
        rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        rx.bind("\0" + addr[1:] if addr.startswith("@") else addr)
        rx.settimeout(2)
        n = Notifier({"NOTIFY_SOCKET": addr, "WATCHDOG_USEC": "10000000"})
        assert n.enabled
        assert n.watchdog_interval == 5.0
        n.ready("up")
        assert rx.recv(1024).decode().startswith("READY=1\nSTATUS=up\nMAINPID=")
        n.watchdog()
        assert rx.recv(1024) == b"WATCHDOG=1"
        rx.close()
    off = Notifier({})
    assert not off.enabled
    assert off.send("READY=1") is False


def test_find_daemon_socket(tmp_path: Path) -> None:
    from netwatch.daemon.client import find_daemon_socket

    path = tmp_path / "s.sock"
    assert find_daemon_socket(path) is None
    server = SnapshotServer(path)
    assert find_daemon_socket(path) == path
    server.close()


def test_a_state_larger_than_the_buffer_limit_still_reaches_a_reader(tmp_path: Path) -> None:
    server = SnapshotServer(tmp_path / "s.sock", max_buffer=1024)
    daemon = _Daemon(server, make_snapshot(1, flows=_flows(40)))
    assert len(daemon.state()) > 1024
    feed = DaemonFeed(tmp_path / "s.sock")
    got: list[Snapshot] = []
    t = threading.Thread(target=lambda: got.append(next(iter(feed.snapshots()))))
    t.start()
    deadline = time.monotonic() + 10
    while t.is_alive() and time.monotonic() < deadline:
        server.poll(0.05)
    t.join(1)
    assert [s.seq for s in got] == [1]
    assert server.resyncs == 0
    feed.close()
    server.close()


def test_a_consumer_that_fell_behind_applies_every_delta_and_gets_every_alert(
    tmp_path: Path,
) -> None:
    server, daemon, feed, it, first = _greeted(tmp_path, make_snapshot(0, flows=_flows(4)))
    assert first.seq == 0
    # The dashboard is busy: five ticks arrive before it asks for the next snapshot, each
    # changing a flow. None may be skipped: each says what changed since the one before.
    flows = list(_flows(4))
    for seq in range(1, 6):
        i = seq % 4
        flows[i] = _numbered(make_flow(local_port=1000 + i, sni=f"t{seq}"), i + 1, seq + 1)
        alert = make_alert(alert_id=f"a{seq}", message=f'tick {seq}: "alerts":[ inside text')
        daemon.tick(make_snapshot(seq, flows=tuple(flows), alerts=(alert,)))
    _serve(server, 0.2)
    newest = next(it)
    assert newest.seq == 5 and newest.flows == tuple(flows)
    assert [a.id for a in newest.alerts] == ["a1", "a2", "a3", "a4", "a5"]
    assert feed.skipped == 4 and feed.bad_lines == 0
    feed.close()
    server.close()


def test_unchanged_flows_are_not_decoded_again(tmp_path: Path) -> None:
    flows = _flows(30)
    server, daemon, feed, it, first = _greeted(tmp_path, make_snapshot(1, flows=flows))
    same = make_snapshot(2, flows=flows, alerts=(make_alert(alert_id="new"),))
    daemon.tick(same)
    _serve(server, 0.2)
    second = next(it)
    assert second.flows is first.flows and feed.reused == 1  # not decoded again
    assert second == same  # and yet exactly what was sent: seq, alerts, status
    f0 = flows[0].flow
    moved = (replace(flows[0], flow=replace(f0, bytes_sent=99, rev_traffic=1)), *flows[1:])
    daemon.tick(make_snapshot(3, flows=moved))
    _serve(server, 0.2)
    third = next(it)
    assert third.flows == moved and third.flows is not first.flows and feed.reused == 1
    # Only the flow that changed was decoded again; the others are the same objects.
    assert third.flows[0] is not first.flows[0]
    assert all(a is b for a, b in zip(third.flows[1:], first.flows[1:], strict=True))
    feed.close()
    server.close()


def test_a_lost_delta_makes_the_feed_come_back_for_a_fresh_state(tmp_path: Path) -> None:
    server, daemon, feed, it, _ = _greeted(tmp_path, make_snapshot(1, flows=_flows(3)))
    daemon.encoder.delta(make_snapshot(2, flows=_flows(3, rev=2)))  # never sent: lost
    daemon.tick(make_snapshot(3, flows=_flows(3, rev=3)))
    got: list[Snapshot] = []
    t = threading.Thread(target=lambda: got.append(next(it)))
    t.start()
    deadline = time.monotonic() + 10
    while t.is_alive() and time.monotonic() < deadline:
        server.poll(0.05)
    t.join(1)
    assert [s.seq for s in got] == [3] and got[0].flows == _flows(3, rev=3)
    assert feed.resyncs == 1 and feed.connects == 2  # reconnected; greeted with a state
    feed.close()
    server.close()


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.integers(0, 4000), st.integers(0, 40))
def test_feed_decoding_never_raises_on_damaged_lines(noise: bytes, at: int, cut: int) -> None:
    encoder = StreamEncoder()
    good = codec.frame(encoder.encode(make_snapshot(4, flows=_flows(2), alerts=(make_alert(),))))
    good += codec.frame(encoder.delta(make_snapshot(5, flows=_flows(2, rev=2))))
    damaged = good[: at % len(good)] + noise + good[at % len(good) + cut :]
    feed = DaemonFeed(Path("/nonexistent.sock"))
    feed._decoder.restart()
    alerts = feed._apply(codec.FrameReader().feed(damaged))  # never raises
    if alerts:
        assert isinstance(feed._decoder.snapshot(), Snapshot)
