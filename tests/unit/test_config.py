"""Config loading: the policy section, one located line per problem, discovery order."""

from __future__ import annotations

import ipaddress
import subprocess
import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netwatch.config import Config, load_config, parse_config
from netwatch.errors import ConfigError
from netwatch.model import Action

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
    assert sorted(lines) == sorted(
        [
            f"netwatch: {path}:2: policy.home_country: 5 is not a two-letter country code",
            f"netwatch: {path}:4: policy.rules.a.b: 'maybe' is not one of alert, log, ignore",
        ]
    ), lines
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
    assert load_config() == Config()  # no user file, no site file (conftest isolates both)
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
                 "rules", "trusted_networks", "home_country", "vpn.unexpected", "x",
                 "interval", "retention_days", "max_db_mb", "export_file", "export_format",
                 "syslog", "metrics_port", "capture", "interface", "tunnel", "required",
                 "interfaces", "allowed_networks"]
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


def test_daemon_section_good_values() -> None:
    text = (
        "[daemon]\ninterval = 0.5\nretention_days = 7\nmax_db_mb = 64\n"
        'export_file = "/var/log/netwatch/alerts.jsonl"\nexport_format = "ecs"\n'
        'syslog = "tcp://[2001:db8::1]:6514"\nmetrics_port = 9977\ncapture = false\n'
        'interface = "eth0"\nflow_export_file = "/var/log/netwatch/flows.ndjson"\n'
        'flow_export_format = "ecs"\nflow_export_every = 0\n'
    )
    d = parse_config(tomllib.loads(text)).daemon
    assert d.flow_export_file == Path("/var/log/netwatch/flows.ndjson")
    assert (d.flow_export_format, d.flow_export_every) == ("ecs", 0.0)
    assert (d.interval, d.retention_days, d.max_db_mb) == (0.5, 7.0, 64)
    assert d.export_file == Path("/var/log/netwatch/alerts.jsonl") and d.export_format == "ecs"
    assert (d.syslog, d.metrics_port, d.capture, d.interface) == (
        "tcp://[2001:db8::1]:6514",
        9977,
        False,
        "eth0",
    )
    assert parse_config({}).daemon.interval is None  # unset: the flag's default applies


def test_daemon_section_problems_are_located_lines() -> None:
    text = (
        '[daemon]\ninterval = "fast"\nretention_days = -1\nmax_db_mb = 1.5\n'
        'export_format = "xml"\nsyslog = "udp://h:99999"\nmetrics_port = true\n'
        'capture = "no"\ninterface = ""\ncolour = 1\nfull_sample_every = -2\n'
        'flow_export_format = "csv"\nflow_export_every = -1\nflow_export_file = 3\n'
    )
    with pytest.raises(ConfigError) as info:
        parse_config(tomllib.loads(text), "c.toml")
    lines = str(info.value).split("\nnetwatch: ")
    keys = [line.split(": ")[1] for line in lines]
    assert sorted(keys) == sorted(
        f"daemon.{k}"
        for k in (
            "colour", "interval", "retention_days", "max_db_mb", "export_format", "syslog",
            "metrics_port", "capture", "interface", "full_sample_every",
            "flow_export_format", "flow_export_every", "flow_export_file",
        )
    )  # fmt: skip


def test_flags_win_over_daemon_settings_which_win_over_defaults() -> None:
    import argparse

    from netwatch.cli.daemon import apply_settings

    settings = parse_config(
        tomllib.loads(
            '[daemon]\ninterval = 5\nsyslog = "udp://127.0.0.1:514"\ncapture = false\n'
            "full_sample_every = 0\nflow_export_every = 0\ncontainers = false\n"
        )
    ).daemon
    flags = argparse.Namespace(
        interval=None, retention_days=2.0, max_db_mb=None, export_file=None,
        export_format=None, metrics_port=None, interface=None, syslog=None, no_capture=False,
        no_containers=False, full_sample_every=None, flow_export_file=None, flow_export_format=None,
        flow_export_every=None, hourly_after_days=None,
    )  # fmt: skip
    got = apply_settings(flags, settings)
    assert got.hourly_after_days == 1.0
    assert (got.flow_export_file, got.flow_export_format) == (None, "jsonl")
    assert got.flow_export_every == 0.0  # zero is a setting (no interim records)
    assert apply_settings(flags, parse_config({}).daemon).flow_export_every == 300.0
    assert got.full_sample_every == 0.0  # zero is a setting (every tick), not "unset"
    assert apply_settings(flags, parse_config({}).daemon).full_sample_every == 5.0
    assert (got.interval, got.retention_days, got.max_db_mb, got.export_format) == (
        5.0,
        2.0,
        256,
        "jsonl",
    )
    assert (got.syslog.host, got.syslog.port, got.syslog.protocol) == ("127.0.0.1", 514, "udp")
    assert got.no_capture is True
    assert got.no_containers is True  # `containers = false` in [daemon]
    assert apply_settings(flags, parse_config({}).daemon).no_containers is False
    assert flags.interval is None  # the parsed flags are left alone
