"""The policy checked against what detection knows: rule ids and protocol labels.

The config module sits below detection and cannot know the rule pack or the dissectors'
label names, so a typo there (`"vpn.unexpect" = "ignore"`, `protocols = ["openpvn"]`) would
load and silently change nothing. Every command that loads both the policy and the rules
calls `check_policy`, which names each unknown id or label with its file and line and the
closest known one; so do `[notify]` rule globs that match no rule.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Collection

from netwatch.config import Config
from netwatch.detect.rule import RuleSet
from netwatch.dissect.labels import NAMES
from netwatch.errors import ConfigError, one_line


def _unknown(config: Config, key: str, what: str, value: str, known: Collection[str]) -> str:
    """One located line for a value nothing knows, with the nearest known one if any."""
    close = difflib.get_close_matches(value, sorted(known), n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(sorted(known))}"
    return f"{config.where(key)}: {one_line(key)}: unknown {what} {value!r} ({hint})"


def policy_problems(config: Config, rules: RuleSet) -> list[str]:
    """Located lines for rule ids and protocol labels the policy names but nothing knows."""
    ids = set(rules.ids)
    out = [
        _unknown(config, f"policy.rules.{rid}", "rule id", rid, ids)
        for rid, _action in config.policy.rules
        if rid not in ids
    ]
    for i, entry in enumerate(config.policy.expected_vpn):
        key = f"policy.expected_vpn[{i}].protocols"
        out += [
            _unknown(config, key, "protocol", p, NAMES) for p in entry.protocols if p not in NAMES
        ]
    return out + _notify_problems(config, ids)


def _notify_problems(config: Config, ids: Collection[str]) -> list[str]:
    """`[notify]` rule globs that match no rule: a glob such as `tor.*` (the rule is
    `anon.tor`) would load and notify nothing, silently."""
    notify = config.notify
    selections = [("notify.rules", notify.selection)] + [
        (f"notify.{name}.rules", channel.selection)
        for name, channel in (
            ("desktop", notify.desktop),
            ("webhook", notify.webhook),
            ("command", notify.command),
        )
        if channel is not None
    ]
    return [
        _unknown(config, key, "rule glob", glob, ids)
        for key, selection in selections
        for glob in selection.rules or ()
        if not fnmatch.filter(ids, glob)
    ]


def check_policy(config: Config, rules: RuleSet) -> None:
    """Raise one `ConfigError` listing every unknown rule id and protocol label."""
    problems = policy_problems(config, rules)
    if problems:
        # cli.main prefixes only the first line; the others get the same prefix here.
        raise ConfigError("\nnetwatch: ".join(problems))
