"""The command line: argparse subcommands, one module each, errors as one line.

`main` is the composition root for commands: each `netwatch.cli.<command>` module registers
its parser and runs it, importing heavy modules (scapy, textual, geoip2) only inside `run`.
`netwatch` with no command opens the dashboard. Every `NetwatchError` becomes
`netwatch: <message>` on stderr with its exit code; usage errors exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from netwatch import __version__
from netwatch.errors import EXIT_USAGE, NetwatchError

COMMANDS = (
    "watch",
    "snapshot",
    "analyze",
    "lookup",
    "geoip",
    "rules",
    "config",
    "lists",
    "daemon",
    "export",
    "history",
    "record",
    "check",
    "providers",
)

EXIT_INTERNAL = 70


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line and exit 2."""

    def error(self, message: str) -> NoReturn:
        """Print `netwatch <cmd>: <message>` and exit 2 instead of the usage block."""
        sys.stderr.write(f"{self.prog}: {message} (see --help)\n")
        raise SystemExit(EXIT_USAGE)


def build_parser() -> Parser:
    """Build the parser with every subcommand registered."""
    parser = Parser(
        prog="netwatch",
        description=(
            "Which process talks to whom, where that is, how much, over what protocol, and "
            "whether it is VPN or anonymizer traffic. Without a command, opens the dashboard."
        ),
    )
    parser.add_argument("--version", action="version", version=f"netwatch {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name in COMMANDS:
        module = importlib.import_module(f"netwatch.cli.{name}")
        module.register(sub)
    return parser


def _with_default_command(argv: list[str]) -> list[str]:
    """No command means the dashboard; bare dashboard flags go to `watch` too."""
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version")):
        return ["watch", *argv]
    return argv


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return the exit code."""
    args_list = _with_default_command(list(sys.argv[1:] if argv is None else argv))
    parser = build_parser()
    args = parser.parse_args(args_list)
    try:
        code = args.func(args)
    except NetwatchError as exc:
        sys.stderr.write(f"netwatch: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # stdout closed by e.g. `| head`: not an error; silence the flush at exit too.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except Exception as exc:
        if os.environ.get("NETWATCH_DEBUG"):
            raise
        sys.stderr.write(
            f"netwatch: internal error: {type(exc).__name__}: {exc} "
            "(set NETWATCH_DEBUG=1 to see the traceback)\n"
        )
        return EXIT_INTERNAL
    return int(code or 0)
