"""The stop flag that threads watch as a file descriptor (`sources.waker`)."""

from __future__ import annotations

import select
import threading
import time

from netwatch.sources.waker import Waker


def _readable(waker: Waker) -> bool:
    return bool(select.select([waker], [], [], 0)[0])


def test_a_fresh_waker_sleeps_its_whole_timeout() -> None:
    waker = Waker()
    started = time.monotonic()
    assert waker.wait(0.05) is False
    assert time.monotonic() - started >= 0.045
    assert not _readable(waker) and not waker.is_set()


def test_set_ends_a_wait_in_another_thread_at_once_and_stays_readable() -> None:
    waker = Waker()
    ended: list[float] = []

    def sleeper() -> None:
        waker.wait(30.0)
        ended.append(time.monotonic())

    thread = threading.Thread(target=sleeper)
    thread.start()
    time.sleep(0.05)
    set_at = time.monotonic()
    waker.set()
    thread.join(5.0)
    assert ended and ended[0] - set_at < 1.0
    assert waker.is_set() and waker.wait(30.0) is True
    waker.drain()
    assert _readable(waker), "a set waker stays readable for every later wait"


def test_a_nudge_ends_one_wait_and_is_taken() -> None:
    waker = Waker()
    waker.nudge()
    waker.nudge()  # two nudges before a wait are one wake-up
    assert _readable(waker)
    started = time.monotonic()
    assert waker.wait(30.0) is False
    assert time.monotonic() - started < 1.0
    assert not _readable(waker), "the wait took the nudge"
    assert waker.wait(0.02) is False and not waker.is_set()
