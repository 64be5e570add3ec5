"""Arguments and output helpers shared by several commands."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING

from netwatch.errors import EXIT_RUNTIME

if TYPE_CHECKING:
    from netwatch.model import Alert

FORMATS = ("table", "jsonl")


def add_format(parser: argparse.ArgumentParser, choices: tuple[str, ...] = FORMATS) -> None:
    """Add `--format` with the given choices; the first is the default."""
    parser.add_argument(
        "--format",
        choices=choices,
        default=choices[0],
        help=f"output format (default {choices[0]})",
    )


def add_geoip(parser: argparse.ArgumentParser) -> None:
    """Add `--geoip-db` (repeatable): explicit mmdb files that take precedence over all others."""
    parser.add_argument(
        "--geoip-db",
        action="append",
        default=[],
        metavar="FILE",
        help="a MaxMind DB file to use before the discovered and bundled ones (repeatable)",
    )


def open_output(path: Path | None) -> IO[str]:
    """`-o FILE` opened private (0600, `files.open_private`), else standard output; a file
    that cannot be written is one line (`DataFileError`). The caller closes what is not
    `sys.stdout`. Newlines are written as given: CSV rows end in CRLF themselves."""
    from netwatch import files
    from netwatch.errors import DataFileError

    if path is None:
        return sys.stdout
    try:
        return files.open_private(path, "w", encoding="utf-8", newline="")
    except OSError as exc:
        raise DataFileError(f"cannot write {path}: {exc.strerror or exc}") from None


def write_lines(lines: Iterable[str]) -> None:
    """Write lines to stdout, flushing at the end."""
    out = sys.stdout
    for line in lines:
        out.write(line)
        out.write("\n")
    out.flush()


def report_skipped(skipped: Iterable[str]) -> int:
    """One stderr line per damaged data file a command ran without; exit 1 if there was one.

    The output is still printed (what the other files know is still true), but a script must
    see that it is incomplete: bad input anywhere is a non-zero exit.
    """
    lines = [f"netwatch: skipped {line}\n" for line in skipped]
    sys.stderr.write("".join(lines))
    return EXIT_RUNTIME if lines else 0


def amount(unit: str, high: float, *, zero: bool = False) -> Callable[[str], float]:
    """An argparse type for a number of `unit` above 0 (or from 0, with `zero`) to `high`."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not ((value >= 0 if zero else value > 0) and value <= high):
            raise argparse.ArgumentTypeError(f"{text!r} must be between 0 and {high:g} {unit}")
        return value

    return parse


def table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> list[str]:
    """Left-aligned columns under a header; the last column is not padded."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths[:-1]) + "  {}"
    return [fmt.format(*header), *(fmt.format(*r) for r in rows)]


def label_note(a: Alert) -> str:
    """` [label openvpn (high: opcode)]` after an alert line, so the reader sees what the
    alert's flow was taken for and on what evidence; empty without a label."""
    return "" if a.label is None else f" [label {a.label.summary()}]"
