"""`netwatch providers [NAME]`: who runs each VPN netwatch recognises, and what is on record.

Without NAME, one line per provider: id, name, kind, the operator's country and its commonly
cited 5/9/14 Eyes groups, audits, incidents and what it logs. With NAME (an id, a name, or a
label or list name such as `vpngate` or `openvpn`), every fact with its source URL and the
day it was checked. `--file` shows (and so checks) a providers file of the same shape instead
of the bundled one: a damaged file is one located line, exit 1. An unknown NAME is one line,
exit 2, like any bad argument.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from netwatch.cli.common import add_format, table, write_lines

if TYPE_CHECKING:
    from netwatch.enrich.providers import ProviderTable
    from netwatch.model import ProviderFacts

HEADER = ("ID", "NAME", "KIND", "CC", "GROUPS", "AUDITS", "INCIDENTS", "LOGGING")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the `providers` subcommand."""
    parser = sub.add_parser(
        "providers",
        help="who runs the VPNs netwatch recognises: country, audits, incidents, logging",
        description=(
            "Print the VPN and anonymizer operators netwatch recognises, with the operator's "
            "country and its commonly cited 5/9/14 Eyes groups, independent audits, public "
            "incidents and what it logs; with NAME, every fact with its source and the day "
            "it was checked."
        ),
    )
    parser.add_argument("name", nargs="?", metavar="NAME", help="an id, name or label")
    add_format(parser)
    parser.add_argument(
        "--file", type=Path, metavar="FILE", help="a providers file to show instead of the bundled"
    )
    parser.set_defaults(func=run)


def _row(p: ProviderFacts) -> tuple[str, ...]:
    return (
        p.id,
        p.name,
        p.kind,
        p.country or "-",
        ", ".join(p.groups) or "-",
        str(len(p.audits)),
        str(len(p.incidents)),
        p.logging or "-",
    )


def _detail(p: ProviderFacts, providers: ProviderTable) -> list[str]:
    labels = sorted(k for k, v in providers.by_label.items() if v is p)
    lists = sorted(k for k, v in providers.by_list.items() if v is p)
    hosts = sorted(k for k, v in providers.by_host.items() if v is p)
    lines = [p.summary, "", f"  id          {p.id}", f"  kind        {p.kind}"]
    lines.append(f"  operator    {p.operator}")
    if p.has_operator:
        country = p.country or f"not established ({p.country_note})"
        lines.append(f"  country     {country}")
        lines.append(f"  groups      {', '.join(p.groups) or 'none'} (commonly cited groupings)")
    lines.append(f"  logging     {p.logging or '-'}")
    lines.append(f"  source      {p.source} (checked {p.checked})")
    recognised = [*(f"label {x}" for x in labels), *(f"list {x}" for x in lists)]
    recognised += [f"host *.{x}" for x in hosts]
    lines.append(f"  recognised  {', '.join(recognised) or '-'}")
    for f in p.facts:
        lines += [f"  fact        {f.text}", f"              {f.url} (checked {f.checked})"]
    if not p.audits:
        lines.append("  audits      none published")
    for a in p.audits:
        lines += [f"  audit       {a.auditor} {a.year}: {a.scope}", f"              {a.url}"]
    if not p.incidents:
        lines.append("  incidents   none known")
    for i in p.incidents:
        lines += [f"  incident    {i.year}: {i.what}", f"              {i.url}"]
    return lines


def run(args: argparse.Namespace) -> int:
    """Print the table, or one provider's facts."""
    from netwatch import codec
    from netwatch.enrich.providers import load
    from netwatch.errors import UsageError, one_line

    providers = load(args.file)
    chosen = providers.providers
    if args.name is not None:
        found = providers.named(args.name)
        if found is None:
            shown = args.name if len(args.name) <= 60 else args.name[:57] + "..."
            known = ", ".join(p.id for p in providers.providers)
            raise UsageError(f"providers: no provider {one_line(shown)!r} (known: {known})")
        chosen = (found,)
    if args.format == "jsonl":
        write_lines(
            json.dumps(codec.provider_to_dict(p), ensure_ascii=False, separators=(",", ":"))
            for p in chosen
        )
        return 0
    if args.name is not None:
        write_lines(_detail(chosen[0], providers))
        return 0
    lines = table(HEADER, [_row(p) for p in chosen])
    lines += ["", f"providers.toml version {providers.version}, checked {providers.checked}."]
    lines += [
        "Compiled without network access: re-check a fact at its source before relying on it."
    ]
    for c in providers.context:
        lines.append(f"Context: {c.year}: {c.what} ({c.url})")
    write_lines(lines)
    return 0
