"""History requests on the daemon's socket, in-process: the real loop, store, server and
worker, with a scripted engine in the sampler's place (outside the thing under test).

A client asks and gets the same totals `read_usage` gives on the file; a slow query (a
store of 1.44 million minute rows, by minute steps) does not delay the ticks another client
reads; a query past its time limit is one error line; hostile clients (garbage, oversized
lines, lines that are no request, a flood of them) get error records or are closed, and
the loop goes on ticking and answering.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest

from netwatch.clock import SystemClock
from netwatch.codec import frame
from netwatch.daemon.client import DaemonFeed, DaemonHistory
from netwatch.daemon.server import MAX_BAD, SnapshotServer
from netwatch.daemon.service import Service, ServiceOptions
from netwatch.errors import NetwatchError
from netwatch.history_wire import MAX_REQUEST, Request, request
from netwatch.model import Snapshot
from netwatch.model.usage import UsageQuery
from netwatch.store import Store
from netwatch.store.rollup import HOUR
from netwatch.store.sqlite import read_usage
from tests.builders import make_snapshot
from tests.history_store import write_big_store, write_recent_store

pytestmark = [pytest.mark.daemon, pytest.mark.timeout(120)]


class CountingEngine:
    """A new (empty) snapshot every tick: the sampler's place."""

    def __init__(self) -> None:
        self.detector = None
        self.n = 0

    def tick(self) -> Snapshot:
        self.n += 1
        return make_snapshot(self.n, taken_at=time.time())

    def close(self) -> None:
        pass


def _service(db: Path, sock: Path, ticks: int, interval: float, query_time: float) -> Service:
    return Service(
        CountingEngine(), None, Store(db), SnapshotServer(sock), SystemClock(),
        options=ServiceOptions(
            interval=interval, ticks=ticks, flow_flush=3600.0, query_time=query_time
        ),
    )  # fmt: skip


def _in_thread(target: object) -> threading.Thread:
    t = threading.Thread(target=target, daemon=True)  # type: ignore[arg-type]  # a callable
    t.start()
    return t


def test_a_client_gets_the_files_totals_over_the_socket(tmp_path: Path) -> None:
    db, sock = tmp_path / "n.db", tmp_path / "n.sock"
    end = int(time.time())
    totals = write_recent_store(db, end)
    service = _service(db, sock, ticks=15, interval=0.1, query_time=5.0)
    got: dict[str, object] = {}

    def ask() -> None:
        source = DaemonHistory(sock, end - 2 * HOUR)
        try:
            q = UsageQuery(since=end - 3 * HOUR - 60, until=end + 60, by="process")
            got["usage"] = source.usage(q)
            got["bounds"] = source.bounds()
            got["away"] = source.away()
        except NetwatchError as exc:
            got["error"] = str(exc)
        finally:
            source.close()

    t = _in_thread(ask)
    service.run()
    t.join(10)
    assert "error" not in got, got
    answer = got["usage"]
    q = UsageQuery(since=end - 3 * HOUR - 60, until=end + 60, by="process")
    assert answer == read_usage(db, q)  # the same typed rows as on the file
    by_name = {t.key[0]: t.total for t in answer.totals}  # type: ignore[attr-defined]
    assert by_name == totals
    assert got["bounds"] is not None
    assert got["away"] is not None


def test_a_slow_query_does_not_delay_the_ticks_another_client_reads(tmp_path: Path) -> None:
    db, sock = tmp_path / "n.db", tmp_path / "n.sock"
    end = int(time.time())
    rows = write_big_store(db, end, dims=2000, minutes=720)
    interval = 0.2
    service = _service(db, sock, ticks=60, interval=interval, query_time=60.0)
    arrivals: list[float] = []
    answers: list[tuple[float, int]] = []
    errors: list[str] = []

    def read() -> None:
        feed = DaemonFeed(sock, backoff=0.05)
        for _ in feed.snapshots():
            arrivals.append(time.monotonic())
            if len(arrivals) >= 55:
                break
        feed.close()

    def ask() -> None:
        source = DaemonHistory(sock, None, wait=60.0)
        q = UsageQuery(since=end - 12 * HOUR, until=end, by="process", step=60)
        try:
            while len(arrivals) < 45:
                start = time.monotonic()
                answer = source.usage(q)
                answers.append((time.monotonic() - start, len(answer.totals)))
        except NetwatchError as exc:
            errors.append(str(exc))
        finally:
            source.close()

    reader = _in_thread(read)
    time.sleep(0.05)
    asker = _in_thread(ask)
    service.run()
    reader.join(10)
    asker.join(60)
    assert not errors, errors
    assert answers, "no answer came"
    slowest = max(s for s, _ in answers)
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
    print(f"\n{rows} minute rows; answers {[(round(s, 2), n) for s, n in answers]}; "
          f"tick gaps max {max(gaps):.3f} s, mean {sum(gaps) / len(gaps):.3f} s")  # fmt: skip
    assert all(n == 50 * 720 for _, n in answers)  # 50 programs x 720 minutes
    # The query took longer than the bound: on the tick path it would have broken it.
    assert slowest > 1.0
    assert max(gaps) < 1.0, gaps


def test_a_query_past_its_time_limit_is_one_error_line(tmp_path: Path) -> None:
    db, sock = tmp_path / "n.db", tmp_path / "n.sock"
    end = int(time.time())
    write_big_store(db, end, dims=1000, minutes=600)
    service = _service(db, sock, ticks=30, interval=0.1, query_time=0.05)
    got: list[str] = []

    def ask() -> None:
        source = DaemonHistory(sock, None)
        try:
            source.usage(UsageQuery(since=end - 10 * HOUR, until=end, by="remote", step=60))
        except NetwatchError as exc:
            got.append(str(exc))
        # The worker is free again: a small query is answered.
        try:
            got.append(repr(source.bounds()))
        except NetwatchError as exc:
            got.append(str(exc))
        source.close()

    t = _in_thread(ask)
    service.run()
    t.join(10)
    assert got[0] == "the daemon: the store: the query took longer than its time limit"
    assert got[1].startswith("(")


CLOSED: list[socket.socket] = []
"""Sockets the daemon closed (end of file or reset) while `_lines` read them."""


def _lines(sock: socket.socket, want: int, limit: float = 5.0) -> list[dict[str, object]]:
    """Records read until `want` history records came (stream records are passed over)."""
    buf, out = b"", []
    deadline = time.monotonic() + limit
    sock.settimeout(0.2)
    while len(out) < want and time.monotonic() < deadline:
        try:
            data = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:  # reset: the daemon closed it with what we sent unread
            data = b""
        if not data:
            CLOSED.append(sock)
            break
        buf += data
        *done, buf = buf.split(b"\n")
        for line in done:
            rec = json.loads(line)
            if str(rec.get("type", "")).startswith("history"):
                out.append(rec)
    return out


def test_hostile_requests_get_error_records_and_never_stop_the_loop(tmp_path: Path) -> None:
    db, sock = tmp_path / "n.db", tmp_path / "n.sock"
    end = int(time.time())
    write_recent_store(db, end)
    service = _service(db, sock, ticks=40, interval=0.1, query_time=5.0)
    seen: dict[str, object] = {}
    arrivals: list[float] = []

    def read() -> None:
        feed = DaemonFeed(sock, backoff=0.05)
        for _ in feed.snapshots():
            arrivals.append(time.monotonic())
            if len(arrivals) >= 30:
                break
        feed.close()

    def hostile() -> None:
        time.sleep(0.3)
        # Malformed records of every kind: each gets an error record with its id if it had one.
        s = socket.socket(socket.AF_UNIX)
        s.connect(str(sock))
        bad = [
            b"not json\n",
            b"[1, 2]\n",
            frame({"schema": 2, "type": "history", "id": 7, "op": "drop tables"}),
            frame({"schema": 2, "type": "history", "id": 8, "op": "usage",
                   "query": {"by": "process", "since": 1e300}}),
            frame({"schema": 2, "type": "history", "id": 9, "op": "usage",
                   "query": {"by": "process", "process": "x" * 5000}}),
            frame({"schema": 2, "type": "history", "id": -1, "op": "bounds"}),
            frame({"schema": 2, "type": "state"}),
        ]  # fmt: skip
        s.sendall(b"".join(bad))
        seen["errors"] = _lines(s, len(bad))
        # Still a good client after that: a real request is answered.
        s.sendall(frame(request(Request(10, "bounds"))))
        seen["after"] = _lines(s, 1)
        s.close()
        # A line longer than MAX_REQUEST is passed over with one error record.
        s = socket.socket(socket.AF_UNIX)
        s.connect(str(sock))
        s.sendall(b'{"x": "' + b"y" * (MAX_REQUEST * 4) + b'"}\n')
        s.sendall(frame(request(Request(11, "bounds"))))
        seen["long"] = _lines(s, 2)
        s.close()
        # A flood of bad lines: closed after MAX_BAD.
        s = socket.socket(socket.AF_UNIX)
        s.connect(str(sock))
        try:
            for _ in range(200):
                s.sendall(b"{}\n" * 50)
        except OSError:
            pass  # closed by the daemon while sending: what the test wants
        got = _lines(s, 10_000, limit=5.0)
        seen["flood"] = len(got)
        seen["flood_closed"] = s in CLOSED
        s.close()

    reader = _in_thread(read)
    attacker = _in_thread(hostile)
    service.run()
    attacker.join(20)
    reader.join(10)
    errors = seen["errors"]
    assert isinstance(errors, list)
    assert all(e["type"] == "history_error" for e in errors), errors
    assert [e["id"] for e in errors] == [None, None, 7, 8, 9, None, None]
    assert all("\n" not in str(e["error"]) for e in errors)
    after = seen["after"]
    assert isinstance(after, list) and after[0]["type"] == "history_answer"
    long = seen["long"]
    assert isinstance(long, list)
    assert [r["type"] for r in long] == ["history_error", "history_answer"]
    assert isinstance(seen["flood"], int) and seen["flood"] <= MAX_BAD
    assert seen["flood_closed"]
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
    assert len(arrivals) >= 30 and max(gaps) < 1.0, gaps


def test_a_client_that_asks_and_never_reads_is_closed_not_resynced(tmp_path: Path) -> None:
    """Its answers pile up past the bound: there is no state that would catch it up, so it
    is closed (a stream reader in its place would be resynced)."""
    server = SnapshotServer(tmp_path / "n.sock", max_buffer=10_000)
    big = frame({"schema": 2, "type": "history_answer", "id": 1, "pad": "x" * 200_000})
    asked: list[int] = []

    def take(client: int, record: dict[str, object]) -> None:
        del record  # every request gets the same big answer, later (as the worker's)
        asked.append(client)

    server.set_requests(take, asked.remove)
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(tmp_path / "n.sock"))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    for _ in range(40):
        try:
            s.sendall(frame(request(Request(1, "bounds"))))
        except OSError:
            break
        server.poll(0.01)
        for client in list(asked):
            server.answer(client, big)
    assert server.clients == 0 and server.resyncs == 0
    s.close()
    server.close()
