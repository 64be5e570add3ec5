"""The daemon loop hands announced alerts to `[notify]` channels without waiting for them.

A real service (store, server, loop) with a scripted engine, and two real channels: a command
that records each note, and a webhook to a receiver that accepts and never answers. The
loop's ticks only queue; the notes are sent by each channel's thread; at shutdown what the
rate limit held goes out as one digest.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
from pathlib import Path

import pytest

from netwatch.clock import SystemClock
from netwatch.config import NotifySettings, Selection
from netwatch.daemon.server import SnapshotServer
from netwatch.daemon.service import Service, ServiceOptions
from netwatch.notify.command import CommandChannel
from netwatch.notify.webhook import WebhookChannel
from netwatch.notify.worker import ChannelWorker, Notifications
from netwatch.store import Store
from tests.builders import T0, make_alert, make_snapshot
from tests.clock import FakeClock
from tests.daemon.test_service import ScriptedEngine

pytestmark = pytest.mark.timeout(60)

RECORD = "import sys; open(sys.argv[1], 'a').write(sys.stdin.read() + '\\n')"


def test_ticks_queue_notes_and_a_dead_webhook_only_drops(tmp_path: Path) -> None:
    snaps = [
        make_snapshot(i, alerts=(make_alert(alert_id=f"a{i}", first_seen=T0 + i),))
        for i in range(1, 31)
    ]
    out = tmp_path / "notes.jsonl"
    settings = NotifySettings(window=3600, burst=3, queue=4)
    recorder = CommandChannel([sys.executable, "-c", RECORD, str(out)], timeout=30)
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)
    hook = WebhookChannel(f"http://127.0.0.1:{silent.getsockname()[1]}/t", retries=0, timeout=1.0)
    clock = SystemClock()
    command = ChannelWorker(recorder, Selection(), replace_queue(settings, 100), clock)
    webhook = ChannelWorker(hook, Selection(), settings, clock)
    service = Service(
        ScriptedEngine(snaps),
        None,
        Store(tmp_path / "n.db"),
        SnapshotServer(tmp_path / "n.sock"),
        FakeClock(),
        options=ServiceOptions(ticks=len(snaps)),
        notifications=Notifications([command, webhook]),
    )
    try:
        for _ in snaps:
            service.tick_once()
        assert webhook.dropped > 0  # the hung receiver's queue filled; the ticks went on
        service.shutdown()
    finally:
        silent.close()
    notes = [json.loads(line) for line in out.read_text().splitlines()]
    assert [len(n["alerts"]) for n in notes] == [1, 1, 1, 27]  # the burst, then one digest
    assert notes[-1]["digest"] and notes[-1]["title"] == "netwatch: 27 alerts"
    tick_thread = threading.current_thread().name
    assert tick_thread not in command.send_threads | webhook.send_threads
    assert webhook.sent == 0 and webhook.failed >= 1


def replace_queue(settings: NotifySettings, size: int) -> NotifySettings:
    from dataclasses import replace

    return replace(settings, queue=size)
