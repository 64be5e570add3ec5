"""A stop flag that a thread asleep in `select` or `epoll` watches as a file descriptor.

Why: a thread that waits on a socket with a short timeout only to notice that it should stop
wakes five times a second for nothing, and on this kind of machine each wake-up of a Python
thread costs about 0.1 ms of CPU (measured: 0.06 % of a core per thread polling every
0.2 s). The daemon's collector and analyzer have four such threads (the hooks' ring, the
connection-start sockets, process events, the capture ring), which was most of the split
daemon's idle cost. A `Waker` is an eventfd the thread adds to its wait: `set()` ends the
wait at once, so the timeout can be long; `nudge()` ends one wait without stopping (capture's
`settle` asks the reader to come round).

It has `threading.Event`'s `set`, `is_set` and `wait`, so it replaces one where a loop used
an event for its stop flag and its sleeps.
"""

from __future__ import annotations

import contextlib
import os
import select
import weakref

LONG_WAIT = 5.0
"""Seconds a thread with a `Waker` waits for its sockets before looking round anyway: only a
safety net, since stop and nudges wake it at once."""


class Waker:
    """A stop flag with a file descriptor: readable once `set()` or `nudge()` was called."""

    def __init__(self) -> None:
        self._fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._set = False
        weakref.finalize(self, os.close, self._fd)  # the fd lives as long as the waker

    def fileno(self) -> int:
        """The eventfd, for `select`, `poll` or `epoll` (readable when woken)."""
        return self._fd

    def set(self) -> None:
        """Stop: every wait on this waker ends now and later ones return at once."""
        self._set = True
        self._write()

    def is_set(self) -> bool:
        """Whether `set()` was called."""
        return self._set

    def nudge(self) -> None:
        """End the current (or next) wait once, without stopping."""
        self._write()

    def drain(self) -> None:
        """Take a nudge, so the next wait sleeps again (a set waker stays readable)."""
        if not self._set:
            with contextlib.suppress(BlockingIOError, OSError):
                os.eventfd_read(self._fd)

    def wait(self, timeout: float | None) -> bool:
        """Sleep up to `timeout` seconds or until woken; True when set (as `Event.wait`)."""
        if not self._set:
            with contextlib.suppress(InterruptedError):
                if select.select([self._fd], [], [], timeout)[0]:
                    self.drain()
        return self._set

    def _write(self) -> None:
        with contextlib.suppress(BlockingIOError):  # the counter is full: it is readable
            os.eventfd_write(self._fd, 1)
