"""`netwatch check`: "is my PC safe?", the VPN checklist run by the machine.

Looks at installed VPN software and whether it runs, SoftEther config files (read only: a
VPNGATE relay hub, client connections to VPN Gate or set to start and reconnect by
themselves, or to a server outside `home_country`), VPN programs' listening ports, recent VPN
alerts in the store, and whether internet traffic would go around a tunnel (each family's
default route against `[policy.tunnel]`: IPv6 direct beside an IPv4 tunnel). Prints one
block per finding (severity, what, evidence, what to do) or JSONL. Exit 4 when anything is
high, else 1 when something could not be read, else 0.
"""

from __future__ import annotations

import argparse
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from netwatch.cli.common import add_format, write_lines
from netwatch.cli.export import parse_time

if TYPE_CHECKING:
    from netwatch.model import Alert, CheckFacts, Finding

WIDTH = 100
INDENT = 10


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the `check` subcommand."""
    p = sub.add_parser(
        "check",
        help="is my PC safe? VPN software, SoftEther relay and client settings, VPN alerts",
        description=(
            "Check this machine for VPN software, a VPN Gate relay, VPN connections that start "
            "by themselves, VPN programs' listening ports, recent VPN alerts and routes that go "
            "around a VPN tunnel. Exit 4 when a "
            "high finding is made, 1 when something could not be read, 0 otherwise."
        ),
    )
    add_format(p)
    p.add_argument("--db", type=Path, metavar="PATH", help="SQLite store (default: state dir)")
    p.add_argument(
        "--config", type=Path, metavar="FILE", help="config file ([policy.tunnel], home_country)"
    )
    p.add_argument(
        "--since",
        type=parse_time,
        metavar="AGE",
        help="alerts seen at or after this time or age (default 7d)",
    )
    p.add_argument(
        "--softether-dir",
        action="append",
        metavar="DIR",
        help="look for SoftEther config files here instead of the usual places (repeatable)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Gather, judge, print; the exit code says whether anything high was found."""
    import json

    from netwatch import codec
    from netwatch.detect.check import incomplete, worst
    from netwatch.errors import EXIT_HIGH_FINDING, EXIT_RUNTIME
    from netwatch.model import Severity

    findings = check_machine(args.db, args.since, args.softether_dir, args.config)
    if args.format == "jsonl":
        write_lines(json.dumps(codec.finding_to_dict(f), ensure_ascii=False) for f in findings)
    else:
        write_lines(render(findings))
    if worst(findings) in (Severity.HIGH, Severity.CRITICAL):
        return EXIT_HIGH_FINDING
    return EXIT_RUNTIME if incomplete(findings) else 0


def check_machine(
    db: Path | None = None,
    since: float | None = None,
    softether_dirs: Sequence[str] | None = None,
    config: Path | None = None,
) -> list[Finding]:
    """Look at this machine and judge it: `netwatch check`, and the dashboard's check screen.

    `since` defaults to 7 days ago, `softether_dirs` to the usual SoftEther places; the
    policy (tunnel, home country) comes from `config` or the usual config files."""
    from dataclasses import replace

    from netwatch.config import load_config
    from netwatch.detect.check import check
    from netwatch.sources.hostfacts import CONFIG_DIRS
    from netwatch.sources.vpncheck import gather

    policy = load_config(config).policy
    now = time.time()
    facts = gather(now, softether_dirs or CONFIG_DIRS)
    facts = replace(facts, countries=_server_countries(facts))
    alerts, notes, damaged = _recent_alerts(db, now - 7 * 86400 if since is None else since)
    return check(
        facts,
        alerts,
        notes,
        damaged,
        tunnel=policy.tunnel,
        home_country=policy.home_country,
    )


def _server_countries(facts: CheckFacts) -> tuple[tuple[str, str], ...]:
    """(address, country) of SoftEther servers given as addresses, from the GeoIP data in use
    (the bundled file at least); names are not resolved, so the check sends nothing."""
    from netwatch.cli.stages import enricher
    from netwatch.model import parse_ip

    servers = set()
    for cfg in facts.host.softether:
        for a in cfg.accounts:
            try:
                parse_ip(a.hostname)
            except ValueError:  # a host name: not resolved
                continue
            servers.add(a.hostname.strip())
    if not servers:
        return ()
    geo = enricher([])
    try:
        found = ((s, geo.remote_info(s).country) for s in sorted(servers))
        return tuple((s, c) for s, c in found if c)
    finally:
        geo.close()


def _recent_alerts(db: Path | None, since: float) -> tuple[list[Alert], list[str], list[str]]:
    """The store's alerts since `since`; a missing store is a note, a damaged one a problem."""
    from netwatch import paths
    from netwatch.cli.export import default_store
    from netwatch.errors import NetwatchError
    from netwatch.store import AlertQuery, read_alerts

    path = db or default_store(paths.default_db())
    if not path.exists():
        return [], [f"no alert store at {path}: recent VPN alerts not checked"], []
    try:
        return list(read_alerts(path, AlertQuery(since=since))), [], []
    except NetwatchError as exc:
        return [], [], [str(exc)]


def render(findings: Sequence[Finding]) -> list[str]:
    """One block per finding, wrapped to 100 columns: severity, title, evidence, advice."""
    if not findings:
        return ["nothing found: no VPN software, relay, VPN listener or recent VPN alert"]
    out: list[str] = []
    pad = " " * INDENT
    for f in findings:
        out += _wrap(f.title, f"{f.severity.value.upper():<{INDENT}}", pad)
        for line in f.evidence:
            out += _wrap(line, pad + "- ", pad + "  ")
        if f.advice:
            out += _wrap("What to do: " + f.advice, pad, pad)
        out.append("")
    return out[:-1]


def _wrap(text: str, first: str, rest: str) -> list[str]:
    """`text` wrapped to `WIDTH`, never splitting a path, a host name or a command."""
    return textwrap.wrap(
        text,
        WIDTH,
        initial_indent=first,
        subsequent_indent=rest,
        break_long_words=False,
        break_on_hyphens=False,
    )
