"""`netwatch config show`: every effective setting, with the file and line it came from.

Which file a command reads depends on who runs it (`--config`, `$NETWATCH_CONFIG`, the
user's `~/.config/netwatch/config.toml`, `/etc/netwatch/config.toml`; the daemon reads only
`--config` or /etc). `show` loads the config as the command would (`--daemon`: as the
daemon does), checks it against the rule pack like every command, and prints each value:
policy, every rule's action, and each `[daemon]` setting with its default when unset.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netwatch.cli.common import add_format, table, write_lines

if TYPE_CHECKING:
    from netwatch.config import Config
    from netwatch.detect.rule import RuleSet
    from netwatch.model import EndpointPattern

DEFAULT = "default"
"""The FROM column of a value no file set."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `config show`."""
    parser = sub.add_parser("config", help="show the effective configuration")
    config_sub = parser.add_subparsers(dest="config_command", metavar="SUBCOMMAND", required=True)
    show = config_sub.add_parser(
        "show",
        help="every effective value with the file and line it came from",
        description=(
            "Print every effective setting (policy, each rule's action, [daemon]) and where "
            "it came from: FILE:LINE, or 'default'. Bad values are errors, as for any command."
        ),
    )
    add_format(show)
    where = show.add_mutually_exclusive_group()
    where.add_argument("--config", type=Path, metavar="FILE", help="show this config file")
    where.add_argument(
        "--daemon",
        action="store_true",
        help="show what `netwatch daemon` reads (/etc/netwatch/config.toml only)",
    )
    show.set_defaults(func=run_show)


def run_show(args: argparse.Namespace) -> int:
    """Load the config as a command (or the daemon) would and print every value."""
    from netwatch.cli.stages import policy_and_rules
    from netwatch.config import Config, config_files

    config, rules = policy_and_rules(args.config, system=args.daemon)
    rows = list(effective_values(config, rules))
    if args.format == "jsonl":
        keys = ("key", "value", "from")
        write_lines(json.dumps(dict(zip(keys, r, strict=True))) for r in rows)
        return 0
    if config.source == Config().source:
        tried = ", ".join(str(p) for p in config_files(args.config, system=args.daemon))
        sys.stdout.write(f"# no config file ({tried}): defaults\n")
    else:
        sys.stdout.write(f"# {config.source}\n")
    write_lines(table(("KEY", "VALUE", "FROM"), rows))
    return 0


def _show(value: Any) -> str:
    """A value as a user would write it (lists comma-separated, booleans lower-case)."""
    from netwatch.model import EndpointPattern

    if isinstance(value, tuple):
        return ", ".join(_show(v) for v in value) or "(none)"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, EndpointPattern):
        return _endpoint(value)
    return "(not set)" if value is None else str(value)


def _endpoint(e: EndpointPattern) -> str:
    net = e.network
    host = str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)
    if e.port is None:
        return host
    return f"[{host}]:{e.port}" if net.version == 6 else f"{host}:{e.port}"


def effective_values(config: Config, rules: RuleSet) -> Iterator[tuple[str, str, str]]:
    """(key, value, FILE:LINE or `default`) for every setting netwatch acts on."""
    from netwatch.cli.daemon import DEFAULTS
    from netwatch.config import DaemonSettings
    from netwatch.model import TunnelPolicy

    def row(key: str, value: Any, is_set: bool) -> tuple[str, str, str]:
        return key, _show(value), config.where(key) if is_set else DEFAULT

    policy = config.policy
    yield row("policy.home_country", policy.home_country, policy.home_country is not None)
    yield row("policy.trusted_networks", policy.trusted_networks, bool(policy.trusted_networks))
    tunnel = policy.tunnel or TunnelPolicy()
    for name in ("required", "interfaces", "allowed_networks"):
        yield row(f"policy.tunnel.{name}", getattr(tunnel, name), policy.tunnel is not None)
    for i, entry in enumerate(policy.expected_vpn):
        for name in ("name", "process", "path", "protocols", "endpoints"):
            value = getattr(entry, name)
            if value:
                yield row(f"policy.expected_vpn[{i}].{name}", value, True)
    configured = dict(policy.rules)
    for rid in rules.ids:
        yield row(f"policy.rules.{rid}", policy.action_for(rid).value, rid in configured)
    settings = config.daemon
    for f in fields(DaemonSettings):
        key, value = f"daemon.{f.name}", getattr(settings, f.name)
        if value is not None:
            yield row(key, value, True)
        elif f.name == "capture":
            yield row(key, "true (when privileged)", False)
        else:
            yield row(key, DEFAULTS.get(f.name), False)
    yield from _notify_values(config, row)


def _notify_values(
    config: Config, row: Callable[[str, Any, bool], tuple[str, str, str]]
) -> Iterator[tuple[str, str, str]]:
    """`[notify]` rows; a webhook's URL only redacted (it is a credential)."""
    from netwatch.config import NotifySettings
    from netwatch.notify.webhook import redact

    n, default = config.notify, NotifySettings()
    sel = n.selection
    yield row("notify.rules", sel.rules, config.line("notify.rules") is not None)
    severity = sel.min_severity.value if sel.min_severity else None
    yield row("notify.min_severity", severity, config.line("notify.min_severity") is not None)
    for name in ("window", "burst", "queue"):
        value = getattr(n, name)
        yield row(f"notify.{name}", value, value != getattr(default, name))
    channels: dict[str, Any] = {"desktop": n.desktop, "webhook": n.webhook, "command": n.command}
    for kind, channel in channels.items():
        if channel is None:
            yield row(f"notify.{kind}", "off", False)
            continue
        for f in fields(channel):
            value = getattr(channel, f.name)
            key = f"notify.{kind}.{f.name}"
            if f.name == "selection":
                for part in ("rules", "min_severity"):
                    own = getattr(value, part)
                    if own is not None:
                        shown = own.value if part == "min_severity" else own
                        yield row(f"notify.{kind}.{part}", shown, True)
                continue
            shown = redact(value) if f.name == "url" else value
            yield row(key, shown, config.line(key) is not None)
