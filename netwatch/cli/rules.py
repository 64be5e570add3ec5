"""`netwatch rules check [PATH]` and `netwatch rules list`: validate and show detection rules.

`check` validates the bundled pack, or the rule files at PATH (a file or a directory of
`*.toml`, which may use the bundled `[lists]`), and prints one located line per problem
(`file:line: rule id: key: message`) on stderr, exiting 1 when there are any. `list` shows
the bundled rules with the action the policy gives them; `--fields` shows what conditions
may test.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from netwatch.cli.common import add_format, table, write_lines


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `rules check` and `rules list`."""
    parser = sub.add_parser("rules", help="check and list detection rules")
    rules_sub = parser.add_subparsers(dest="rules_command", metavar="SUBCOMMAND", required=True)
    check = rules_sub.add_parser(
        "check", help="validate rule files: one located line per problem, exit 1 if any"
    )
    check.add_argument(
        "path", nargs="?", type=Path, help="a rule file or directory (default: the bundled pack)"
    )
    check.set_defaults(func=run_check)
    listing = rules_sub.add_parser("list", help="the bundled rules and their policy actions")
    add_format(listing)
    listing.add_argument("--config", type=Path, help="config file whose policy to apply")
    listing.add_argument(
        "--fields", action="store_true", help="list the fields and operators conditions may use"
    )
    listing.set_defaults(func=run_list)


def run_check(args: argparse.Namespace) -> int:
    """Check the rules and report every problem."""
    from netwatch.detect.loader import bundled_rule_files, check_rule_files, rule_files
    from netwatch.errors import UsageError

    if args.path is None:
        ruleset, problems = check_rule_files(bundled_rule_files())
    else:
        if not args.path.exists():
            raise UsageError(f"{args.path}: no such file or directory")
        files = rule_files(args.path)
        if not files:
            raise UsageError(f"{args.path}: no *.toml rule files there")
        ruleset, problems = check_rule_files(files, with_bundled_lists=True)
    if problems:
        sys.stderr.write("".join(f"{p}\n" for p in problems))
        return 1
    count = len(ruleset.rules)
    write_lines([f"{count} rule{'s' if count != 1 else ''} OK ({len(ruleset.files)} files)"])
    return 0


def run_list(args: argparse.Namespace) -> int:
    """Print the rules (or the fields) as a table or JSON lines."""
    from netwatch.cli.stages import policy_and_rules
    from netwatch.detect.conditions import OPS
    from netwatch.detect.fields import FIELDS, WINDOW_FIELDS, Kind

    if args.fields:
        rows = [(n, f.kind.value, ", ".join(OPS[f.kind]), f.doc) for n, f in FIELDS.items()]
        rows += [
            (n, "number, window.having only", ", ".join(OPS[Kind.NUM]), doc)
            for n, doc in WINDOW_FIELDS.items()
        ]
        if args.format == "jsonl":
            write_lines(
                json.dumps(dict(zip(("field", "type", "operators", "description"), r, strict=True)))
                for r in rows
            )
        else:
            write_lines(table(("FIELD", "TYPE", "OPERATORS", "DESCRIPTION"), rows))
        return 0
    config, ruleset = policy_and_rules(args.config)
    policy = config.policy
    rules_rows = [
        (r.id, r.severity.value, policy.action_for(r.id).value, r.title, " ".join(r.tags))
        for r in ruleset.rules
    ]
    if args.format == "jsonl":
        keys = ("id", "severity", "action", "title", "tags")
        write_lines(json.dumps(dict(zip(keys, r, strict=True))) for r in rules_rows)
    else:
        write_lines(table(("RULE", "SEVERITY", "ACTION", "TITLE", "TAGS"), rules_rows))
    return 0
