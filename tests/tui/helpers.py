"""Feeds and waits for driving NetwatchApp under `run_test` (no network, fixed clock)."""

from __future__ import annotations

import queue
from collections.abc import Callable, Iterator
from pathlib import Path

from textual.pilot import Pilot

from netwatch.feed import ReplayFeed, read_recording
from netwatch.model import Snapshot

DATA = Path(__file__).resolve().parent.parent / "data" / "snapshots"
T0 = 1_700_000_000.0
NOW = T0 + 10
"""The fixed clock every TUI test uses for ages."""


def recording(name: str = "vpngate.jsonl") -> list[Snapshot]:
    return read_recording(DATA / name)


def replay(name: str = "vpngate.jsonl") -> ReplayFeed:
    return ReplayFeed.from_file(DATA / name)


class StepFeed:
    """A feed the test advances by hand: `push(snapshot)`; `close()` ends it."""

    status: str | None = None

    def __init__(self) -> None:
        self._queue: queue.Queue[Snapshot | None] = queue.Queue()

    def push(self, snapshot: Snapshot) -> None:
        self._queue.put(snapshot)

    def snapshots(self) -> Iterator[Snapshot]:
        while True:
            item = self._queue.get()
            if item is None:
                return
            yield item

    def close(self) -> None:
        self._queue.put(None)


class FailingFeed:
    """A feed whose source breaks after one snapshot (e.g. the daemon went away)."""

    status: str | None = None

    def __init__(self, first: Snapshot) -> None:
        self.first = first

    def snapshots(self) -> Iterator[Snapshot]:
        yield self.first
        raise ConnectionResetError("daemon socket closed")

    def close(self) -> None:
        pass


async def wait_for(pilot: Pilot[None], cond: Callable[[], bool], limit: float = 10.0) -> None:
    """Let the app run until `cond()` holds; fail after `limit` seconds."""
    steps = int(limit / 0.02)
    for _ in range(steps):
        if cond():
            return
        await pilot.pause(0.02)
    raise AssertionError("condition not reached in time")
