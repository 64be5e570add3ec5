"""Arguments and output helpers shared by several commands."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable

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


def write_lines(lines: Iterable[str]) -> None:
    """Write lines to stdout, flushing at the end."""
    out = sys.stdout
    for line in lines:
        out.write(line)
        out.write("\n")
    out.flush()
