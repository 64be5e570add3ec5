"""Where the dashboard gets snapshots from: the `SnapshotFeed` protocol and `ReplayFeed`.

The UI depends on this module and the model only. `pipeline.LiveFeed` samples in-process,
`daemon.client.DaemonFeed` reads the daemon socket, and `ReplayFeed` plays recorded
snapshots (a file written by `netwatch record`: the delta protocol of `netwatch.stream`, or
one whole snapshot per line from before it; or a list built by tests).
`FindingsSource` is the same seam for the check screen: `cli.watch` injects a callable that
runs `netwatch check`'s collector.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Protocol

from netwatch import codec
from netwatch.errors import DataFileError
from netwatch.model import Finding, Snapshot
from netwatch.stream import StreamDecoder

FindingsSource = Callable[[], Sequence[Finding]]
"""Looks at this machine and returns `netwatch check`'s findings, worst first. Blocking (it
reads packages, processes and files): the check screen calls it in a thread worker."""


class SnapshotFeed(Protocol):
    """A blocking source of snapshots, iterated in a worker thread."""

    @property
    def status(self) -> str | None:
        """How the feed itself is doing (a daemon link: `connected`, or why not); None for
        feeds that cannot lose their source (a recording, an in-process engine)."""
        ...

    def snapshots(self) -> Iterator[Snapshot]:
        """Yield snapshots until the feed ends or `close()` is called."""
        ...

    def close(self) -> None:
        """Stop the iteration soon; safe to call from another thread."""
        ...


def read_recording(path: Path) -> list[Snapshot]:
    """Read a recording: a `state` line, then `delta` lines (`netwatch.stream`), or an old
    recording of one schema-1 snapshot per line. A bad line is a `DataFileError` naming it."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DataFileError(f"cannot read recording {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise DataFileError(f"{path}: not a text recording") from None
    decoder = StreamDecoder()
    out: list[Snapshot] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            out.append(decoder.decode(codec.parse(line)))
        except codec.CodecError as exc:
            raise DataFileError(f"{path}:{number}: {exc.message}") from None
    return out


class ReplayFeed:
    """Plays a fixed sequence of snapshots, optionally `pace` seconds apart."""

    status: str | None = None
    """A recording cannot lose its source (`SnapshotFeed.status`)."""

    def __init__(self, snapshots: Iterable[Snapshot], pace: float = 0.0, loop: bool = False):
        self._snapshots = list(snapshots)
        self._pace = pace
        self._loop = loop
        self._closed = threading.Event()

    @classmethod
    def from_file(cls, path: Path, pace: float = 0.0, loop: bool = False) -> ReplayFeed:
        """Build a feed from a recording file."""
        return cls(read_recording(path), pace=pace, loop=loop)

    def snapshots(self) -> Iterator[Snapshot]:
        """Yield the recorded snapshots, waiting `pace` between them."""
        while True:
            for snap in self._snapshots:
                if self._closed.is_set():
                    return
                yield snap
                if self._pace and self._closed.wait(self._pace):
                    return
            if not self._loop or not self._snapshots:
                return

    def close(self) -> None:
        """Stop the replay."""
        self._closed.set()
