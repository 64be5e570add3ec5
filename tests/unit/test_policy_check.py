"""Typos in the policy are located errors: unknown rule ids and protocol labels, did-you-mean."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from netwatch.cli.stages import policy_and_rules
from netwatch.dissect import labels
from netwatch.dissect.dissector import _DNS_NAMES
from netwatch.errors import ConfigError
from tests.conftest import run

REPO = Path(__file__).resolve().parent.parent.parent

TYPOS = """[policy]
home_country = "DE"

[policy.rules]
"geo.new_country" = "log"
"vpn.unexpect" = "ignore"

[[policy.expected_vpn]]
process = "openvpn"
protocols = ["OpenVPN", "nosuchproto", "wireguerd"]
"""


def test_unknown_rule_ids_and_protocols_are_located_lines(
    netwatch_cmd: list[str], tmp_path: Path
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(TYPOS)
    res = run([*netwatch_cmd, "rules", "list", "--config", str(path)])
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    assert res.stderr.splitlines() == [
        f"netwatch: {path}:6: policy.rules.vpn.unexpect: unknown rule id 'vpn.unexpect' "
        "(did you mean 'vpn.unexpected'?)",
        f"netwatch: {path}:10: policy.expected_vpn[0].protocols: unknown protocol "
        f"'nosuchproto' (known: {', '.join(sorted(labels.NAMES))})",
        f"netwatch: {path}:10: policy.expected_vpn[0].protocols: unknown protocol 'wireguerd' "
        "(did you mean 'wireguard'?)",
    ]


def test_notify_rule_globs_that_match_no_rule_are_located_lines(
    netwatch_cmd: list[str], tmp_path: Path
) -> None:
    """`tor.*` (the rule is `anon.tor`) would notify nothing, silently: it is named, with
    the closest rule; globs that match rules load."""
    path = tmp_path / "config.toml"
    path.write_text(
        '[notify]\nrules = ["vpn.*", "tor.*"]\n\n'
        '[notify.command]\nargv = ["/bin/true"]\nrules = ["anon.*", "vpngate.relay_x"]\n'
    )
    res = run([*netwatch_cmd, "rules", "list", "--config", str(path)])
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith(f"netwatch: {path}:2: notify.rules: unknown rule glob 'tor.*'")
    assert lines[1].startswith(
        f"netwatch: {path}:6: notify.command.rules: unknown rule glob 'vpngate.relay_x'"
    )
    path.write_text('[notify]\nrules = ["vpn.*", "anon.*", "geo.new_country"]\n')
    config, rules = policy_and_rules(path)
    assert config.notify.selection.rules == ("vpn.*", "anon.*", "geo.new_country")


def test_a_key_holding_a_newline_stays_one_located_line(
    netwatch_cmd: list[str], tmp_path: Path
) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[policy.rules]\n"vpn.x\\ny" = "log"\n')
    res = run([*netwatch_cmd, "rules", "list", "--config", str(path)])
    assert res.returncode == 1
    (line,) = res.stderr.splitlines()
    assert line.startswith(f"netwatch: {path}:2: policy.rules.vpn.x\\ny: unknown rule id")


def test_known_ids_and_every_label_name_load(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    names = ", ".join(f'"{n}"' for n in sorted(labels.NAMES))
    rules_part = '[policy.rules]\n"vpn.unexpected" = "log"\n'
    path.write_text(f"{rules_part}[[policy.expected_vpn]]\nprotocols = [{names}]\n")
    config, rules = policy_and_rules(path)
    assert config.policy.action_for("vpn.unexpected").value == "log"
    assert "vpn.unexpected" in rules.ids


def test_every_command_that_loads_the_policy_checks_it(
    netwatch_cmd: list[str], tmp_path: Path
) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[policy.rules]\n"vpn.unexpect" = "ignore"\n')
    with pytest.raises(ConfigError, match="did you mean 'vpn.unexpected'"):
        policy_and_rules(path)
    daemon = ["daemon", "--ticks", "1", "--no-capture", "--db", str(tmp_path / "n.db")]
    daemon += ["--socket", str(tmp_path / "n.sock")]
    for command in (["snapshot"], ["config", "show"], ["record", "-", "--no-capture"], daemon):
        res = run([*netwatch_cmd, *command, "--config", str(path)])
        assert res.returncode == 1, (command, res.stderr)
        assert res.stderr.startswith(f"netwatch: {path}:2: policy.rules.vpn.unexpect"), res.stderr


def _constructed_names() -> set[str]:
    """Every literal first argument of labels.vpn/plain/anonymizer in netwatch/dissect."""
    found: set[str] = set()
    for path in (REPO / "netwatch" / "dissect").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            is_label = (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "labels"
                and node.func.attr in ("vpn", "plain", "anonymizer")
            )
            if is_label and isinstance(node.args[0], ast.Constant):
                found.add(node.args[0].value)
    return found


def test_labels_names_every_label_the_dissectors_give() -> None:
    constructed = _constructed_names()
    assert {"openvpn", "wireguard", "tor", "tls"} <= constructed  # the scan finds them
    assert constructed <= labels.PROTOCOLS
    assert set(_DNS_NAMES.values()) <= labels.PROTOCOLS
    assert labels.PROTOCOLS <= labels.NAMES
