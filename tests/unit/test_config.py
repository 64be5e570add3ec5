"""Config loading: the policy section, one located line per problem, discovery order."""

from __future__ import annotations

import ipaddress
import subprocess
import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netwatch.config import Action, Config, load_config, parse_config
from netwatch.errors import ConfigError

GOOD = """
[policy]
home_country = "de"
trusted_networks = ["10.8.0.0/16", "2001:db8:1::/48"]

[[policy.expected_vpn]]
name = "work VPN"
process = ["openvpn", "OpenVPN-GUI*"]
path = "/usr/sbin/openvpn"
protocols = ["OpenVPN"]
endpoints = ["203.0.113.5:1194", "198.51.100.0/24", "[2001:db8::5]:443"]

[[policy.expected_vpn]]
protocols = "wireguard"

[policy.rules]
"process.first_connection" = "log"
"geo.new_country" = "ignore"
"""


def test_good_policy(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(GOOD)
    cfg = load_config(path)
    p = cfg.policy
    assert cfg.source == str(path)
    assert p.home_country == "DE"
    assert p.trusted_networks[0] == ipaddress.ip_network("10.8.0.0/16")
    work, wg = p.expected_vpn
    assert work.name == "work VPN"
    assert work.process == ("openvpn", "openvpn-gui*")
    assert work.protocols == ("openvpn",)
    assert [(str(e.network), e.port) for e in work.endpoints] == [
        ("203.0.113.5/32", 1194),
        ("198.51.100.0/24", None),
        ("2001:db8::5/128", 443),
    ]
    assert wg.name == "wireguard"
    assert p.action_for("process.first_connection") is Action.LOG
    assert p.action_for("geo.new_country") is Action.IGNORE
    assert p.action_for("vpngate.relay_mode") is Action.ALERT


BAD = """
[policy]
home_country = "Germany"
trusted_networks = ["10.8.0.0/33"]
colour = "red"

[[policy.expected_vpn]]
process = "openvpn"

[[policy.expected_vpn]]
name = "empty"

[[policy.expected_vpn]]
process = ["ok", 5]
endpoints = ["203.0.113.5:99999", "not-an-address"]
color = 1

[policy.rules]
"vpn.unexpected" = "shout"

[daemonn]
x = 1
"""


def test_every_problem_is_one_located_line() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(tomllib.loads(BAD), "config.toml")
    lines = str(info.value).split("\nnetwatch: ")
    expected = [
        "config.toml: policy.colour: unknown key",
        "config.toml: policy.expected_vpn[1]: needs at least one of",
        "config.toml: policy.expected_vpn[2].color: unknown key",
        "config.toml: policy.expected_vpn[2].process: must be a non-empty string or a list",
        "config.toml: policy.expected_vpn[2].endpoints[0]: '99999' is not a port",
        "config.toml: policy.expected_vpn[2].endpoints[1]: 'not-an-address' is not an address",
        "config.toml: policy.rules.vpn.unexpected: 'shout' is not one of alert, log, ignore",
        "config.toml: policy.trusted_networks[0]: '10.8.0.0/33' is not a network",
        "config.toml: policy.home_country: 'Germany' is not a two-letter country code",
        "config.toml: daemonn: unknown section",
    ]
    assert len(lines) == len(expected), lines
    for want in expected:
        assert any(line.startswith(want) for line in lines), (want, lines)


def test_bad_config_via_cli_is_one_line_per_problem(
    netwatch_cmd: list[str], tmp_path: Path
) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[policy]\nhome_country = 5\n[policy.rules]\n"a.b" = "maybe"\n')
    res = subprocess.run(
        [*netwatch_cmd, "rules", "list", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 2, res.stderr
    assert all(line.startswith(f"netwatch: {path}: policy.") for line in lines), lines
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize(
    ("text", "fragment"),
    [("[policy\n", "not valid TOML"), (b"\xff\xfe", "cannot read")],
)
def test_unreadable_config(tmp_path: Path, text: str | bytes, fragment: str) -> None:
    path = tmp_path / "config.toml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    with pytest.raises(ConfigError, match=fragment):
        load_config(path)


def test_explicit_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "missing.toml")


def test_discovery_env_then_user_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_config() == Config()
    user = tmp_path / ".config" / "netwatch" / "config.toml"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / ".config"))
    user.parent.mkdir(parents=True)
    user.write_text('[policy]\nhome_country = "NL"\n')
    assert load_config().policy.home_country == "NL"
    env = tmp_path / "env.toml"
    env.write_text('[policy]\nhome_country = "JP"\n')
    monkeypatch.setenv("NETWATCH_CONFIG", str(env))
    assert load_config().policy.home_country == "JP"


toml_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=12)),
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(
            st.sampled_from(
                ["policy", "expected_vpn", "process", "path", "protocols", "endpoints", "name",
                 "rules", "trusted_networks", "home_country", "vpn.unexpected", "x"]
            ),
            children,
            max_size=4,
        ),
    ),
    max_leaves=12,
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["policy", "daemon", "x"]), toml_values, max_size=2))
def test_config_parser_never_crashes(data: dict[str, object]) -> None:
    problems: list[str] = []
    try:
        parse_config(data, "fuzz.toml")
    except ConfigError as exc:
        problems = str(exc).split("\nnetwatch: ")
    assert all(line.startswith("fuzz.toml: ") for line in problems)
