"""Every config snippet users are shown loads: README's toml blocks, the alert advice, --help.

Snippets are loaded through the same path as a command's config (file, parser, the check
against the rule pack); config names mentioned in prose (`[daemon]`, `policy.expected_vpn`)
must be real tables and keys.
"""

from __future__ import annotations

import argparse
import re
import tomllib
from dataclasses import fields, replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netwatch.cli import build_parser
from netwatch.cli.stages import policy_and_rules
from netwatch.config import SECTIONS, DaemonSettings, parse_config
from netwatch.detect.loader import load_rules
from netwatch.errors import ConfigError
from netwatch.model import ExpectedVpn, Policy
from netwatch.ui.advice import SNIPPET_INDENT, advice_for
from netwatch.ui.detail import alert_detail
from tests.builders import make_alert, make_process

REPO = Path(__file__).resolve().parent.parent.parent
KEY_NAMES = {f.name for cls in (Policy, DaemonSettings, ExpectedVpn) for f in fields(cls)}
HEADER = re.compile(r"\[\[?\s*([A-Za-z0-9_.-]+)\s*\]\]?")
DOTTED = re.compile(r"\b([a-z_]+(?:\.[a-z_]+)+)\b")


def _load(text: str, tmp_path: Path) -> None:
    """Load `text` as a config file the way every command does, rule ids checked."""
    path = tmp_path / "snippet.toml"
    path.write_text(text, encoding="utf-8")
    policy_and_rules(path)


def _named_config_parts(text: str) -> list[str]:
    """Config tables (`[daemon]`, `[[policy.expected_vpn]]`) and keys (`daemon.interval`)
    that prose names; a dotted name counts when its last part is a config key's name."""
    tables = [m.group(0) for m in HEADER.finditer(text) if m.group(1).split(".")[0] in SECTIONS
              or m.group(1).startswith(("detect", "config"))]  # fmt: skip
    # A config key is named under its section (`daemon.interval`); ECS names such as
    # `container.name` end in a key's name too but are not config.
    keys = [
        d
        for d in DOTTED.findall(text)
        if d.split(".")[-1] in KEY_NAMES and d.split(".")[0] in SECTIONS
    ]
    return tables + keys


def _check_named_parts(text: str) -> None:
    for part in _named_config_parts(text):
        if part.startswith("["):
            header = part.strip("[]").strip()
            if part.startswith("[["):
                parse_config({header.split(".")[0]: {header.split(".")[1]: []}})
            else:
                section, _, sub = header.partition(".")
                problem = ""
                try:
                    parse_config({section: {sub: {}} if sub else {}})
                except ConfigError as exc:  # a real table may need a key (notify.webhook: url)
                    problem = str(exc)
                assert "unknown" not in problem, part
        else:
            section, key = part.split(".", 1)
            assert section in SECTIONS, part
            known = {f.name for f in fields(Policy if section == "policy" else DaemonSettings)}
            assert key.split(".")[0] in known, part


def test_every_readme_toml_block_loads(tmp_path: Path) -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```toml\n(.+?)\n```", text, flags=re.S)
    assert len(blocks) >= 2
    for block in blocks:
        _load(block, tmp_path)
    _check_named_parts(text)


def _snippets(lines: tuple[str, ...]) -> list[str]:
    """Runs of consecutive snippet lines, dedented."""
    runs: list[list[str]] = []
    previous = False
    for line in lines:
        inside = line.startswith(SNIPPET_INDENT)
        if inside and not previous:
            runs.append([])
        if inside:
            runs[-1].append(line[len(SNIPPET_INDENT) :])
        previous = inside
    return ["\n".join(run) + "\n" for run in runs]


@pytest.mark.parametrize("rule_id", load_rules().ids)
def test_advice_for_every_rule_names_real_config(rule_id: str, tmp_path: Path) -> None:
    alert = make_alert(rule_id, process=make_process("openvpn"))
    lines = advice_for(alert)
    for snippet in _snippets(lines):
        _load(snippet, tmp_path)
    _check_named_parts("\n".join(lines))


def test_vpn_advice_shows_the_expected_vpn_table_with_the_process(tmp_path: Path) -> None:
    alert = make_alert("vpn.unexpected", process=make_process("my-vpn"))
    (snippet,) = _snippets(advice_for(alert))
    assert snippet == '[[policy.expected_vpn]]\nprocess = ["my-vpn"]\n'
    text = alert_detail(alert, None, now=alert.last_seen).plain
    assert f"{SNIPPET_INDENT}[[policy.expected_vpn]]" in text  # the dashboard shows it


@given(st.text(max_size=20))
def test_advice_snippets_load_for_any_process_name(name: str) -> None:
    alert = replace(make_alert("vpn.unexpected"), process=make_process(name))
    (snippet,) = _snippets(advice_for(alert))
    config = parse_config(tomllib.loads(snippet))
    assert len(config.policy.expected_vpn) == 1


def _help_texts() -> list[str]:
    texts = []
    pending: list[argparse.ArgumentParser] = [build_parser()]
    while pending:
        parser = pending.pop()
        texts.append(parser.format_help())
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                pending.extend(action.choices.values())
    return texts


def test_help_texts_name_real_config() -> None:
    texts = _help_texts()
    assert any("[daemon]" in t for t in texts)  # the walk reaches the subcommands
    for text in texts:
        _check_named_parts(text)
