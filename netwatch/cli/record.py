"""`netwatch record`: not built yet; registered so the command line is complete."""

from __future__ import annotations

import argparse

from netwatch.errors import NetwatchError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the `record` subcommand."""
    parser = sub.add_parser("record", help="(not built yet)")
    parser.set_defaults(func=run)


def run(_args: argparse.Namespace) -> int:
    """Say that the command is not available in this build."""
    raise NetwatchError("'record' is not available in this build yet")
