"""The service loop in-process, driven tick by tick with a scripted engine.

The engine stands in for the OS sampler (outside the thing under test); the store, server,
sinks and loop are the real ones. The key property: whatever is announced (sink, socket
client) is already committed, read back through a separate read-only connection.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from netwatch.clock import SystemClock
from netwatch.codec import JSONDict
from netwatch.daemon.client import DaemonFeed
from netwatch.daemon.server import SnapshotServer
from netwatch.daemon.service import Service, ServiceOptions
from netwatch.daemon.sink_worker import SinkWorker
from netwatch.errors import ConfigError
from netwatch.export.flowlog import FlowReport, FlowReporter, Reason
from netwatch.model import Alert, EnrichedFlow, Snapshot
from netwatch.pipeline import Detector
from netwatch.store import AlertQuery, Store, read_alerts
from netwatch.store.retention import Pruner, Retention
from netwatch.stream import StreamDecoder
from tests.builders import T0, make_alert, make_flow, make_snapshot
from tests.clock import FakeClock

pytestmark = pytest.mark.timeout(60)


class ScriptedEngine:
    """Returns the given snapshots in order (the sampler's place)."""

    def __init__(self, snaps: Sequence[Snapshot]) -> None:
        self.snaps = list(snaps)
        self.detector: Detector | None = None

    def tick(self) -> Snapshot:
        return self.snaps.pop(0)

    def close(self) -> None:
        self.snaps.clear()


class CheckingSink:
    """A live sink that, on every alert, checks the alert is already in the store file."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.seen: list[str] = []
        self.missing: list[str] = []

    def emit(self, alert: Alert) -> None:
        stored = {a.id for a in read_alerts(self.db, AlertQuery())}
        (self.seen if alert.id in stored else self.missing).append(alert.id)

    def close(self) -> None:
        pass


class NewDetector:
    def evaluate(
        self, flows: Sequence[EnrichedFlow], now: float, host: object = None, changes: object = None
    ) -> Sequence[Alert]:
        del flows, now, host, changes  # the point is which detector is installed, not what it finds
        return ()


def _service(tmp_path: Path, snaps: list[Snapshot], **kw: object) -> tuple[Service, CheckingSink]:
    store = Store(tmp_path / "n.db")
    sink = CheckingSink(store.path)
    service = Service(
        ScriptedEngine(snaps),
        kw.pop("build", None),  # type: ignore[arg-type]
        store,
        SnapshotServer(tmp_path / "n.sock"),
        FakeClock(),
        sinks=SinkWorker([sink]),
        options=ServiceOptions(interval=0.01, ticks=len(snaps)),
        **kw,  # type: ignore[arg-type]
    )
    return service, sink


def test_announced_alerts_are_already_committed(tmp_path: Path) -> None:
    snaps = [
        make_snapshot(i, flows=(make_flow(local_port=4000 + i),),
                      alerts=(make_alert(alert_id=f"a{i}", first_seen=T0 + i),))
        for i in range(1, 6)
    ]  # fmt: skip
    service, sink = _service(tmp_path, snaps)
    for _ in snaps:
        service.tick_once()
    service.shutdown()
    assert sink.missing == []
    assert sink.seen == [f"a{i}" for i in range(1, 6)]
    rows = list(read_alerts(tmp_path / "n.db", AlertQuery()))
    assert [a.id for a in rows] == sink.seen


def test_flow_summaries_are_flushed_at_shutdown(tmp_path: Path) -> None:
    snaps = [make_snapshot(i, flows=(make_flow(local_port=5000),)) for i in range(1, 4)]
    service, _ = _service(tmp_path, snaps)
    for _ in snaps:
        service.tick_once()
    service.shutdown()
    import sqlite3

    conn = sqlite3.connect(tmp_path / "n.db")
    (first, last, n) = conn.execute("SELECT first_seen, last_seen, count(*) FROM flows").fetchone()
    conn.close()
    assert n == 1
    assert (first, last) == (T0, T0 + 3)  # builder's first_seen, last tick's time


def test_flow_summaries_follow_unchanged_and_changed_flow_versions(tmp_path: Path) -> None:
    from dataclasses import replace

    from netwatch.flows.serials import fresh_rev, new_serial

    same = make_flow(local_port=5001, bytes_sent=10)  # numbered as the engine numbers it
    same = replace(same, flow=replace(same.flow, serial=new_serial(), rev_facts=1, rev_traffic=2))
    moved = replace(same, flow=replace(same.flow, bytes_sent=999, rev_traffic=fresh_rev()))
    snaps = [make_snapshot(i, flows=(f,)) for i, f in enumerate((same, same, moved, moved), 1)]
    service, _ = _service(tmp_path, snaps)
    service.tick_once()
    service.tick_once()
    service.tick_once()
    service.flush_flows()  # a flush mid-way: rows start again for the same objects
    service.tick_once()
    service.shutdown()
    import sqlite3

    conn = sqlite3.connect(tmp_path / "n.db")
    rows = conn.execute("SELECT first_seen, last_seen, bytes_sent FROM flows").fetchall()
    conn.close()
    assert rows == [(T0, T0 + 4, 999)]


def test_usage_history_is_written_with_the_flow_summaries(tmp_path: Path) -> None:
    from dataclasses import replace

    from netwatch.flows.serials import fresh_rev, new_serial
    from netwatch.store.rollup import UsageQuery
    from netwatch.store.sqlite import read_usage

    f = make_flow(local_port=5004, bytes_sent=100, bytes_received=1000)
    f = replace(f, flow=replace(f.flow, serial=new_serial(), rev_facts=1, rev_traffic=fresh_rev()))
    later = replace(f, flow=replace(f.flow, bytes_sent=150, rev_traffic=fresh_rev()))
    opened = make_flow(local_port=5005, bytes_sent=7, bytes_received=8)
    opened = replace(opened, flow=replace(opened.flow, serial=new_serial(), rev_facts=1))
    ticks = ((f,), (f,), (later, opened), (later, opened))
    service, _ = _service(tmp_path, [make_snapshot(i, flows=t) for i, t in enumerate(ticks, 1)])
    for _ in ticks:
        service.tick_once()
    service.shutdown()
    got = read_usage(tmp_path / "n.db", UsageQuery(by="transport")).totals
    # The first tick is the baseline; then 50 more bytes out and a new conversation.
    assert [(t.bytes_out, t.bytes_in, t.connections) for t in got] == [(57, 8, 1)]


def test_a_flow_that_left_keeps_the_time_it_was_last_seen(tmp_path: Path) -> None:
    left, stays = make_flow(local_port=5002), make_flow(local_port=5003)
    ticks = ((left, stays), (left, stays), (stays,), (stays,))
    snaps = [make_snapshot(i, flows=f) for i, f in enumerate(ticks, 1)]
    service, _ = _service(tmp_path, snaps)
    for _ in snaps:
        service.tick_once()
    service.shutdown()
    import sqlite3

    conn = sqlite3.connect(tmp_path / "n.db")
    rows = conn.execute("SELECT local_port, last_seen FROM flows ORDER BY local_port").fetchall()
    conn.close()
    assert rows == [(5002, T0 + 2), (5003, T0 + 4)]


def test_new_client_gets_recent_alerts_and_mode_daemon(tmp_path: Path) -> None:
    snaps = [make_snapshot(1, alerts=(make_alert(alert_id="x"),)), make_snapshot(2)]
    service, _ = _service(tmp_path, snaps)
    service.tick_once()
    service.tick_once()
    feed = DaemonFeed(tmp_path / "n.sock")
    got: list[Snapshot] = []
    t = threading.Thread(target=lambda: got.append(next(iter(feed.snapshots()))))
    t.start()
    for _ in range(40):
        service.server.poll(0.05)
        if got:
            break
    t.join(5)
    feed.close()
    service.shutdown()
    assert got[0].seq == 2
    assert got[0].status.mode == "daemon"
    assert [a.id for a in got[0].alerts] == ["x"]


def test_an_attached_client_follows_every_tick_through_the_shared_deltas(tmp_path: Path) -> None:
    from dataclasses import replace

    a, b = make_flow(local_port=6001), make_flow(local_port=6002)
    b2 = replace(b, flow=replace(b.flow, bytes_sent=4242))
    ticks = [(a,), (a, b), (a, b2), (b2,), (b2,)]
    snaps = [make_snapshot(i, flows=f) for i, f in enumerate(ticks, 1)]
    service, _ = _service(tmp_path, snaps)
    service.tick_once()
    service.tick_once()  # ticks nobody listens to: the stream catches up at the greeting
    clients = [socket.socket(socket.AF_UNIX) for _ in range(2)]
    for c in clients:
        c.connect(str(tmp_path / "n.sock"))
        c.settimeout(5)
    lines = [c.makefile("rb") for c in clients]
    for _ in range(5):
        service.server.poll(0.02)
    for _ in snaps[2:]:
        service.tick_once()
        service.server.poll(0.05)
    got = [[ln.readline() for _ in range(4)] for ln in lines]
    for c in clients:
        c.close()
    service.shutdown()
    assert got[0] == got[1]  # one encoding of each tick, the same bytes for every client
    decoder = StreamDecoder()
    decoded = [decoder.decode(json.loads(line)) for line in got[0]]
    assert [json.loads(line)["type"] for line in got[0]] == ["state", "delta", "delta", "delta"]
    assert [s.flows for s in decoded] == list(ticks[1:])
    assert all(s.status.mode == "daemon" for s in decoded)


def test_clients_greeted_in_one_tick_share_one_greeting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    snaps = [make_snapshot(1, alerts=(make_alert(alert_id="x"),)), make_snapshot(2)]
    service, _ = _service(tmp_path, snaps)
    built: list[int] = []
    state = service._stream.state

    def spy(alerts: Sequence[Alert] | None = None) -> JSONDict:
        record = state(alerts)
        built.append(record["seq"])
        return record

    monkeypatch.setattr(service._stream, "state", spy)

    def greetings(n: int) -> list[bytes]:
        clients = [socket.socket(socket.AF_UNIX) for _ in range(n)]
        for c in clients:
            c.connect(str(tmp_path / "n.sock"))
            c.settimeout(5)
        for _ in range(10):
            service.server.poll(0.05)
        got = [c.makefile("rb").readline() for c in clients]
        for c in clients:
            c.close()
        return got

    service.tick_once()
    first = greetings(3)
    assert built == [1]
    assert first[0] == first[1] == first[2] and b'"type":"state","seq":1,' in first[0]
    service.tick_once()
    assert b'"type":"state","seq":2,' in greetings(2)[0]
    assert built == [1, 2]
    service.shutdown()


def test_reload_swaps_detector_and_keeps_it_on_error(tmp_path: Path) -> None:
    outcomes: list[object] = [ConfigError("config.toml: policy.home_country: bad"), NewDetector()]

    def build() -> Detector:
        item = outcomes.pop(0)
        if isinstance(item, Exception):
            raise item
        return item  # type: ignore[return-value]

    service, _ = _service(tmp_path, [make_snapshot(1)], build=build)
    engine = service.engine
    service.request_reload()
    service._do_reload()
    assert engine.detector is None  # bad reload: unchanged
    service.request_reload()
    service._do_reload()
    assert isinstance(engine.detector, NewDetector)
    service.shutdown()


def test_run_stops_after_ticks_and_pruner_stops_first(tmp_path: Path) -> None:
    snaps = [make_snapshot(i) for i in range(1, 4)]
    store = Store(tmp_path / "n.db")
    pruner = Pruner(store, Retention(max_age=1.0, max_bytes=None), lambda: T0, every=0.01)
    service = Service(
        ScriptedEngine(snaps), None, store, SnapshotServer(tmp_path / "n.sock"), FakeClock(),
        options=ServiceOptions(interval=0.0, ticks=3), background=(pruner,),
    )  # fmt: skip
    pruner.start()
    assert service.run() == 0
    assert service.ticks_done == 3
    assert not (tmp_path / "n.sock").exists()


class RecordingFlowSink:
    """A flow sink that keeps what it is given (the file sink is tested on its own)."""

    def __init__(self) -> None:
        self.got: list[FlowReport] = []

    def emit(self, item: FlowReport) -> None:
        self.got.append(item)

    def close(self) -> None:
        pass


def test_flow_log_gets_ended_conversations_and_the_open_ones_at_shutdown(tmp_path: Path) -> None:
    a, b = make_flow(local_port=6001), make_flow(local_port=6002)
    snaps = [make_snapshot(1, flows=(a, b)), make_snapshot(2, flows=(b,)),
             make_snapshot(3, flows=(b,))]  # fmt: skip
    sink = RecordingFlowSink()
    service, _ = _service(
        tmp_path, snaps, flow_log=(FlowReporter(active_timeout=0), SinkWorker([sink]))
    )
    for _ in snaps:
        service.tick_once()
    service.shutdown()
    assert [(r.flow.flow.key.local.port, r.reason) for r in sink.got] == [
        (6001, Reason.END),
        (6002, Reason.SHUTDOWN),
    ]


class SlowFlowSink(RecordingFlowSink):
    """Takes a little while per record, like a file on a busy disk."""

    def emit(self, item: FlowReport) -> None:
        time.sleep(0.002)
        super().emit(item)


def test_every_open_conversation_gets_its_last_record_even_past_the_queue(tmp_path: Path) -> None:
    flows = tuple(make_flow(local_port=7000 + i) for i in range(50))
    sink = SlowFlowSink()
    writer: SinkWorker[FlowReport] = SinkWorker([sink], maxsize=2)
    service, _ = _service(tmp_path, [make_snapshot(1, flows=flows)],
                          flow_log=(FlowReporter(), writer))  # fmt: skip
    service.tick_once()
    service.shutdown()
    assert writer.dropped == 0
    assert sorted(r.flow.flow.key.local.port for r in sink.got) == [7000 + i for i in range(50)]


class StuckFlowSink(RecordingFlowSink):
    """Never finishes writing (a hung disk): the stop must not wait for it for long."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def emit(self, item: FlowReport) -> None:
        self.release.wait(30)


def test_a_stuck_flow_writer_holds_up_the_stop_only_for_the_shutdown_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import netwatch.daemon.service as service_module

    monkeypatch.setattr(service_module, "SHUTDOWN_WAIT", 0.5)
    flows = tuple(make_flow(local_port=7000 + i) for i in range(200))
    sink = StuckFlowSink()
    writer: SinkWorker[FlowReport] = SinkWorker([sink], maxsize=2)
    store = Store(tmp_path / "n.db")
    service = Service(
        ScriptedEngine([make_snapshot(1, flows=flows)]), None, store,
        SnapshotServer(tmp_path / "n.sock"), SystemClock(), flow_log=(FlowReporter(), writer),
    )  # fmt: skip
    service.tick_once()
    started = time.monotonic()
    service.shutdown()
    took = time.monotonic() - started
    sink.release.set()
    assert took < 3.0, took
    assert writer.dropped >= 190  # counted, not silent
    assert f"flow log: {writer.dropped} records dropped" in caplog.text
