"""Errors that reach the user as one line and an exit code, never as a traceback.

`cli.main` catches `NetwatchError` and prints `netwatch: <message>`. Every error may carry a
`Location` so that config and rule problems name the file, rule id and key. Imports nothing
from the rest of netwatch.
"""

from __future__ import annotations

from dataclasses import dataclass

EXIT_RUNTIME = 1
EXIT_USAGE = 2
EXIT_NO_CAPTURE = 3
EXIT_HIGH_FINDING = 4
"""`netwatch check` found something high (a VPN Gate relay): not an error, but not safe."""


def one_line(text: str) -> str:
    """`text` with control characters escaped, so a quoted value cannot break the line.

    Problems quote what a file says (a rule id, a placeholder, a key); a newline inside one
    would turn one located line into two, the second naming no file.
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


@dataclass(frozen=True, slots=True)
class Location:
    """Where a problem sits: a file, and optionally a rule id, a key and a line."""

    file: str
    rule_id: str | None = None
    key: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        parts = [self.file if self.line is None else f"{self.file}:{self.line}"]
        if self.rule_id:
            parts.append(f"rule {self.rule_id}")
        if self.key:
            parts.append(self.key)
        return ": ".join(parts)


class NetwatchError(Exception):
    """A problem the user can act on; shown as one line, exit code `exit_code`."""

    exit_code = EXIT_RUNTIME

    def __init__(self, message: str, location: Location | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.location = location

    def __str__(self) -> str:
        if self.location is None:
            return self.message
        return f"{self.location}: {self.message}"


class UsageError(NetwatchError):
    """Bad flags or argument values (exit 2, like argparse)."""

    exit_code = EXIT_USAGE


class ConfigError(NetwatchError):
    """A config or policy file that cannot be used as written."""

    exit_code = EXIT_RUNTIME


class RuleError(NetwatchError):
    """A rule file that does not validate."""

    exit_code = EXIT_RUNTIME


class DataFileError(NetwatchError):
    """A data file (pcap, mmdb, list, database) that is missing, unreadable or corrupt."""

    exit_code = EXIT_RUNTIME


class CaptureUnavailableError(NetwatchError):
    """Packet capture is not possible here (privileges, interface); socket mode still works."""

    exit_code = EXIT_NO_CAPTURE
