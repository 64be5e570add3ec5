"""Selection, the rate limit and the digest: a burst becomes one message per window.

Time is a fake clock (tests/clock.py) moved by hand; the worker runs without its thread and
is drained on the test's thread (`ChannelWorker(start=False)`), with the real command channel
writing every note it is given to a file.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from netwatch.config import NotifySettings, Selection
from netwatch.model import Action, AlertState, Severity
from netwatch.notify.batch import Batcher, Chooser
from netwatch.notify.command import CommandChannel
from netwatch.notify.note import single
from netwatch.notify.worker import ChannelWorker
from tests.builders import make_alert
from tests.clock import FakeClock

RECORD = "import sys; open(sys.argv[1], 'a').write(sys.stdin.read() + '\\n')"


def _recorder(path: Path) -> CommandChannel:
    return CommandChannel([sys.executable, "-c", RECORD, str(path)], timeout=30)


def _notes(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_burst_of_100_is_one_digest_per_window(tmp_path: Path) -> None:
    out = tmp_path / "notes.jsonl"
    clock = FakeClock()
    settings = NotifySettings(window=60.0, burst=1)
    worker = ChannelWorker(_recorder(out), Selection(), settings, clock, start=False)
    # 100 alerts, one every 1.5 s: 150 s, so the burst spans three 60-second windows.
    for i in range(100):
        worker.put(make_alert(severity=Severity.HIGH, alert_id=f"a{i}"))
        worker.drain()
        clock.advance(1.5)
    clock.advance(60)
    worker.drain()
    notes = _notes(out)
    assert [n["digest"] for n in notes] == [False, True, True, True]
    assert notes[0]["alerts"][0]["id"] == "a0"  # type: ignore[index]  # JSON from the codec
    counts = [len(n["alerts"]) for n in notes]  # type: ignore[arg-type]  # JSON lists
    assert sum(counts) == 100
    assert notes[1]["title"] == f"netwatch: {counts[1]} alerts"
    assert "and " in str(notes[1]["body"])  # more than DIGEST_LINES are counted, not listed
    assert worker.dropped == 0


def test_a_quiet_channel_sends_singles_up_to_the_burst() -> None:
    batcher = Batcher(window=60.0, burst=3)
    sent = [batcher.offer(make_alert(alert_id=f"a{i}"), 10.0 + i) for i in range(3)]
    assert [len(s) for s in sent] == [1, 1, 1]
    assert batcher.offer(make_alert(alert_id="a3"), 20.0) == []
    assert batcher.next_due() == 70.0
    assert batcher.due(69.9) == []
    (late,) = batcher.due(70.0)
    assert not late.digest and late.alerts[0].id == "a3"  # one held alert goes out alone
    assert batcher.due(200.0) == []
    assert len(batcher.offer(make_alert(alert_id="a4"), 201.0)) == 1  # a new window


def test_chooser_by_rule_glob_severity_action_and_once_per_alert() -> None:
    chooser = Chooser(
        Selection(rules=("vpn.*",), min_severity=None),
        Selection(rules=("*",), min_severity=Severity.MEDIUM),
    )
    vpn = make_alert(rule_id="vpn.unexpected", severity=Severity.HIGH)
    assert chooser.wants(vpn)
    assert not chooser.wants(replace(vpn, count=2))  # the same alert, updated: told once
    assert not chooser.wants(make_alert(rule_id="geo.new_country", severity=Severity.HIGH))
    assert not chooser.wants(make_alert(rule_id="vpn.leak", severity=Severity.LOW))
    logged = make_alert(rule_id="vpn.leak", severity=Severity.HIGH, alert_id="x")
    assert not chooser.wants(replace(logged, action=Action.LOG))
    assert not chooser.wants(replace(logged, state=AlertState.CLOSED))
    assert chooser.wants(logged)


def test_command_failures_are_errors_the_worker_counts(tmp_path: Path) -> None:
    note_of = make_alert(severity=Severity.HIGH)
    failing = ChannelWorker(
        CommandChannel([sys.executable, "-c", "import sys; sys.exit(3)"], timeout=30),
        Selection(),
        NotifySettings(),
        FakeClock(),
        start=False,
    )
    slow = ChannelWorker(
        CommandChannel([sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.2),
        Selection(),
        NotifySettings(),
        FakeClock(),
        start=False,
    )
    missing = CommandChannel([str(tmp_path / "no-such-program")], timeout=1)
    for worker in (failing, slow):
        worker.put(note_of)
        worker.drain()
        assert (worker.sent, worker.failed) == (0, 1)
    with pytest.raises(OSError, match="no-such-program"):
        missing.send(single(note_of))
