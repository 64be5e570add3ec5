"""Idle source threads sleep until there is work or a stop, and still stop at once.

Each of these threads waits on its sockets for up to `LONG_WAIT` seconds (5) instead of
waking five times a second to look at a stop flag; `stop()` must still end it within a
fraction of that, and capture's `settle()` must still get an idle reader to come round
(`tests/live/test_capture.py` checks what it queues). A regression to a plain timeout makes
these stops take seconds.
"""

from __future__ import annotations

import time

import pytest

from netwatch.sources.capture import LiveCapture
from netwatch.sources.connect_owners import ConnectionOwners
from netwatch.sources.proc_events import ProcessEvents
from netwatch.sources.waker import LONG_WAIT
from tests.conftest import requires_root

pytestmark = [pytest.mark.live, requires_root, pytest.mark.timeout(60)]


def _stop_seconds(stop: object) -> float:
    time.sleep(0.3)  # the threads are asleep in their waits by now
    started = time.monotonic()
    stop()  # type: ignore[operator]
    return time.monotonic() - started


def test_process_events_stop_at_once() -> None:
    events = ProcessEvents().start()
    thread = events._thread
    assert _stop_seconds(events.stop) < LONG_WAIT / 5
    assert thread is not None and not thread.is_alive()


def test_the_start_watchers_threads_stop_at_once() -> None:
    owners = ConnectionOwners().start()
    threads = [t for t in (owners._thread, owners._hooks_thread) if t is not None]
    assert threads, "the watcher runs at least its packet-socket thread"
    assert _stop_seconds(owners.stop) < LONG_WAIT / 5
    assert not any(t.is_alive() for t in threads)


@pytest.mark.parametrize("ring", [True, False], ids=["ring", "recv"])
def test_an_idle_capture_settles_and_stops_at_once(ring: bool) -> None:
    cap = LiveCapture("lo", bpf="udp port 9", ring=ring).start()
    try:
        time.sleep(0.3)
        started = time.monotonic()
        assert cap.settle(), "the idle reader came round"
        assert time.monotonic() - started < LONG_WAIT / 5
    finally:
        thread = cap._thread
        assert _stop_seconds(cap.stop) < LONG_WAIT / 5
    assert thread is not None and not thread.is_alive()
