"""Live sinks: the exporters as the daemon uses them, writing each alert as it is announced.

`FileSink` appends one formatted line per alert to a file and rotates it by size through the
standard library's `RotatingFileHandler` (no hand-written rotation). `SyslogSink` wraps the
syslog sender. `FlowFileSink` writes flow records (`export.flowlog`) the same way, with the
same rotation and file modes, as JSONL or ECS (`FLOW_FORMATS`). All share the `Sink`
protocol the daemon's sink workers drive.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from netwatch import files
from netwatch.export.csv import csv_header, format_csv
from netwatch.export.ecs import format_ecs, format_ecs_flow
from netwatch.export.flowlog import FlowReport
from netwatch.export.jsonl import format_flow_jsonl, format_jsonl
from netwatch.export.syslog import SyslogSender, SyslogTarget, format_rfc5424
from netwatch.model import Alert

log = logging.getLogger("netwatch.export")

FORMATTERS: dict[str, Callable[[Alert], str]] = {
    "jsonl": format_jsonl,
    "csv": lambda a: format_csv(a).rstrip("\r\n"),
    "syslog": lambda a: format_rfc5424(a),
    "ecs": format_ecs,
}
FORMATS = tuple(FORMATTERS)

FLOW_FORMATTERS: dict[str, Callable[[FlowReport], str]] = {
    "jsonl": format_flow_jsonl,
    "ecs": format_ecs_flow,
}
FLOW_FORMATS = tuple(FLOW_FORMATTERS)

_Item = TypeVar("_Item")
_In = TypeVar("_In", contravariant=True)


class Sink(Protocol[_In]):
    """Receives every alert the daemon announces, after it is stored (or, for flow sinks,
    every flow record)."""

    def emit(self, item: _In) -> None:
        """Deliver one item (must not raise on I/O trouble)."""
        ...

    def close(self) -> None:
        """Flush and release resources."""
        ...


class _HeaderedHandler(logging.handlers.RotatingFileHandler):
    """Writes a CSV header at the top of every new file (after each rotation too)."""

    def __init__(self, path: Path, max_bytes: int, backups: int, header: str | None) -> None:
        self._header = header
        self._warned = False
        super().__init__(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
        self._write_header_if_empty()

    def _open(self) -> Any:
        """Open the current file 0600 (0640 for the netwatch group), never by the umask."""
        return files.open_private(Path(self.baseFilename), "a", shared=True, encoding=self.encoding)

    def _write_header_if_empty(self) -> None:
        if self._header and self.stream is not None and self.stream.tell() == 0:
            self.stream.write(self._header + "\n")
            self.stream.flush()

    def doRollover(self) -> None:  # noqa: N802  # overrides the stdlib name
        """Rotate, then start the new file with the header.

        Rotating renames files in the export file's folder. The daemon's unprivileged
        analyzer appends to a file root opened for it, in a folder it may not write: there
        it keeps appending past the size (one warning) instead of losing the file it cannot
        reopen.
        """
        folder = os.path.dirname(self.baseFilename) or "."
        if not os.access(folder, os.W_OK | os.X_OK):
            if not self._warned:
                self._warned = True
                log.warning(
                    "cannot rotate %s: its folder is not writable by this user; appending on",
                    self.baseFilename,
                )
            return
        super().doRollover()
        self._write_header_if_empty()


class _LineFile(Generic[_Item]):
    """Appends one formatted line per item to `path`, rotating at `max_bytes` keeping
    `backups` files, every file with an explicit mode (`files.open_private`)."""

    def __init__(
        self,
        path: Path,
        formatter: Callable[[_Item], str],
        max_bytes: int,
        backups: int,
        header: str | None = None,
    ) -> None:
        self._format = formatter
        files.make_dirs(path.parent, shared=True)
        self._handler = _HeaderedHandler(path, max_bytes, backups, header)
        self._handler.setFormatter(logging.Formatter("%(message)s"))
        self._handler.terminator = "\n"

    def emit(self, item: _Item) -> None:
        """Write one line and flush it."""
        record = logging.LogRecord("netwatch.sink", logging.INFO, "", 0, "%s", None, None)
        record.msg = self._format(item)
        record.args = None
        self._handler.emit(record)

    def close(self) -> None:
        """Close the current file."""
        self._handler.close()


class FileSink(_LineFile[Alert]):
    """Appends formatted alerts to `path`, rotating at `max_bytes` keeping `backups` files."""

    def __init__(
        self, path: Path, fmt: str, max_bytes: int = 10 * 1024 * 1024, backups: int = 5
    ) -> None:
        if fmt not in FORMATTERS:
            raise ValueError(f"unknown export format {fmt!r}")
        header = csv_header().rstrip("\r\n") if fmt == "csv" else None
        super().__init__(path, FORMATTERS[fmt], max_bytes, backups, header)


class FlowFileSink(_LineFile[FlowReport]):
    """Appends flow records to `path` as JSONL or ECS, rotated and moded like `FileSink`."""

    def __init__(
        self, path: Path, fmt: str, max_bytes: int = 10 * 1024 * 1024, backups: int = 5
    ) -> None:
        if fmt not in FLOW_FORMATTERS:
            raise ValueError(f"unknown flow export format {fmt!r}")
        super().__init__(path, FLOW_FORMATTERS[fmt], max_bytes, backups)


class SyslogSink:
    """Sends each alert to a syslog server (RFC 5424, UDP or TCP)."""

    def __init__(self, target: SyslogTarget) -> None:
        self.sender = SyslogSender(target)

    def emit(self, alert: Alert) -> None:
        """Send one alert; failures are logged by the sender."""
        self.sender.send(alert)

    def close(self) -> None:
        """Close the connection."""
        self.sender.close()
