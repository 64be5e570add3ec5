"""The clock seam: the one place that reads wall and monotonic time.

Pure stages take `now` as an argument; composition roots hold a `Clock`. Tests inject their
own clock (tests/clock.py) instead of sleeping.
"""

from __future__ import annotations

import time
from typing import Protocol

LATEST = 4_102_444_800.0
"""2100-01-01: a later time in a file netwatch reads is damage (1e300 overflows every date
formatter: a dashboard or a daemon tick would die formatting it)."""


class Clock(Protocol):
    """Wall time for timestamps, monotonic time for intervals."""

    def now(self) -> float:
        """Return epoch seconds."""
        ...

    def monotonic(self) -> float:
        """Return seconds from an arbitrary origin that never goes backwards."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> float:
        """Return epoch seconds from the system clock."""
        return time.time()

    def monotonic(self) -> float:
        """Return `time.monotonic()`."""
        return time.monotonic()
