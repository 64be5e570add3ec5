"""The socket server and DaemonFeed in-process: fan-out, slow clients dropped, reconnects."""

from __future__ import annotations

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
from netwatch.model import Snapshot
from tests.builders import make_alert, make_flow, make_snapshot
from tests.daemon.harness import STORM

pytestmark = pytest.mark.timeout(60)


def _line(seq: int, flows: int = 1) -> bytes:
    snap = make_snapshot(seq, flows=tuple(make_flow(local_port=1000 + i) for i in range(flows)))
    return codec.dumps(snap).encode() + b"\n"


def _serve(server: SnapshotServer, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        server.poll(0.02)


def test_slow_client_is_dropped_without_blocking_and_fast_one_keeps_up(tmp_path: Path) -> None:
    server = SnapshotServer(tmp_path / "s.sock", max_buffer=256 * 1024)
    slow = socket.socket(socket.AF_UNIX)
    slow.connect(str(tmp_path / "s.sock"))  # never reads
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
    line = _line(1, flows=50)
    started = time.monotonic()
    for seq in range(1, 41):
        server.broadcast(line.replace(b'"seq":1,', f'"seq":{seq},'.encode()))
        _serve(server, 0.02)
    assert time.monotonic() - started < 10  # never waited for the slow reader
    reader.join(10)
    seqs = [s.seq for s in got]
    assert seqs == sorted(set(seqs)) and seqs[-1] == 40  # in order, the newest last
    assert len(seqs) + fast.skipped == 40  # any not yielded were passed over for newer ones
    assert server.dropped == 1
    assert server.clients == 1
    fast.close()
    server.close()
    slow.close()
    assert not (tmp_path / "s.sock").exists()


def _greeted(
    tmp_path: Path, greeting: Snapshot
) -> tuple[SnapshotServer, DaemonFeed, Iterator[Snapshot], Snapshot]:
    """A server greeting with `greeting`, a feed attached to it, and the first snapshot."""
    server = SnapshotServer(tmp_path / "s.sock")
    server.set_greeting(lambda: codec.dumps(greeting).encode() + b"\n")
    feed = DaemonFeed(tmp_path / "s.sock")
    it = feed.snapshots()
    serving = threading.Thread(target=_serve, args=(server, 1.0))
    serving.start()
    first = next(it)
    serving.join()
    return server, feed, it, first


def test_new_client_is_greeted_with_latest_state(tmp_path: Path) -> None:
    greeting = make_snapshot(7, alerts=(make_alert(),))
    server, feed, _, first = _greeted(tmp_path, greeting)
    assert first == greeting
    feed.close()
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
    got = [codec.loads(lines.readline()).seq for _ in range(len(ticks) + 1)]
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


def test_a_snapshot_larger_than_the_buffer_limit_still_reaches_a_reader(tmp_path: Path) -> None:
    server = SnapshotServer(tmp_path / "s.sock", max_buffer=1024)
    feed = DaemonFeed(tmp_path / "s.sock")
    got: list[Snapshot] = []
    t = threading.Thread(target=lambda: got.append(next(iter(feed.snapshots()))))
    t.start()
    deadline = time.monotonic() + 10
    while server.clients == 0 and time.monotonic() < deadline:
        server.poll(0.05)
    line = _line(1, flows=40)
    assert len(line) > 1024
    server.broadcast(line)
    while t.is_alive() and time.monotonic() < deadline:
        server.poll(0.05)
    t.join(1)
    assert [s.seq for s in got] == [1]
    assert server.dropped == 0
    feed.close()
    server.close()


def test_a_consumer_that_fell_behind_gets_the_newest_snapshot_and_every_alert(
    tmp_path: Path,
) -> None:
    server, feed, it, first = _greeted(tmp_path, make_snapshot(0))
    assert first.seq == 0
    # The dashboard is busy: five ticks arrive before it asks for the next snapshot.
    for seq in range(1, 6):
        alert = make_alert(alert_id=f"a{seq}", message=f'tick {seq}: "alerts":[ inside text')
        server.broadcast(codec.dumps(make_snapshot(seq, alerts=(alert,))).encode() + b"\n")
    _serve(server, 0.2)
    newest = next(it)
    assert newest.seq == 5
    assert [a.id for a in newest.alerts] == ["a1", "a2", "a3", "a4", "a5"]
    assert feed.skipped == 4 and feed.bad_lines == 0
    feed.close()
    server.close()


def test_unchanged_flows_are_not_decoded_again(tmp_path: Path) -> None:
    flows = tuple(make_flow(local_port=2000 + i) for i in range(30))
    server, feed, it, first = _greeted(tmp_path, make_snapshot(1, flows=flows))
    same = make_snapshot(2, flows=flows, alerts=(make_alert(alert_id="new"),))
    server.broadcast(codec.dumps(same).encode() + b"\n")
    _serve(server, 0.2)
    second = next(it)
    assert second.flows is first.flows and feed.reused == 1  # not decoded again
    assert second == same  # and yet exactly what was sent: seq, alerts, status
    moved = (replace(flows[0], flow=replace(flows[0].flow, bytes_sent=99)), *flows[1:])
    server.broadcast(codec.dumps(make_snapshot(3, flows=moved)).encode() + b"\n")
    _serve(server, 0.2)
    third = next(it)
    assert third.flows == moved and third.flows is not first.flows and feed.reused == 1
    # Only the flow whose text changed was decoded again; the others are the same objects.
    assert third.flows[0] is not first.flows[0]
    assert all(a is b for a, b in zip(third.flows[1:], first.flows[1:], strict=True))
    feed.close()
    server.close()


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.integers(0, 2000), st.integers(0, 40))
def test_feed_decoding_never_raises_on_damaged_lines(noise: bytes, at: int, cut: int) -> None:
    feed = DaemonFeed(Path("/nonexistent.sock"))
    good = codec.dumps(make_snapshot(4, flows=(make_flow(),), alerts=(make_alert(),))).encode()
    assert feed._decode(good) is not None
    damaged = good[: at % len(good)] + noise + good[at % len(good) + cut :]
    result = feed._decode(damaged)
    assert result is None or isinstance(result, Snapshot)
    assert feed._decode(noise) is None or noise.strip().startswith(b"{")
