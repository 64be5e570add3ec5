"""`[policy.tunnel]`: good values parse, bad ones are located lines, `config show` lists it."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netwatch.config import load_config, parse_config
from netwatch.errors import ConfigError
from netwatch.model import TunnelPolicy

GOOD = """
[policy.tunnel]
required = true
interfaces = ["wg*", "tun*", "ppp0"]
allowed_networks = ["192.168.1.0/24", "fd00::/8"]
"""


def test_good_tunnel_section(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(GOOD)
    tunnel = load_config(path).policy.tunnel
    assert tunnel == TunnelPolicy(
        required=True,
        interfaces=("wg*", "tun*", "ppp0"),
        allowed_networks=(
            ipaddress.ip_network("192.168.1.0/24"),
            ipaddress.ip_network("fd00::/8"),
        ),
    )


def test_tunnel_defaults_and_absence() -> None:
    assert parse_config({"policy": {}}, "c.toml").policy.tunnel is None
    tunnel = parse_config({"policy": {"tunnel": {}}}, "c.toml").policy.tunnel
    assert tunnel == TunnelPolicy(required=False, interfaces=("wg*", "tun*"))
    one = parse_config({"policy": {"tunnel": {"interfaces": "wg0"}}}, "c.toml").policy.tunnel
    assert one is not None and one.interfaces == ("wg0",)


BAD = """
[policy.tunnel]
required = "yes"
interfaces = ["wg*", 3]
allowed_networks = ["192.168.1.0/24", "192.168.1.0/33"]
kill_switch = true
"""


def test_bad_tunnel_values_are_located_lines(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(BAD)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    lines = str(info.value).split("\nnetwatch: ")
    expected = [
        f"{path}:6: policy.tunnel.kill_switch: unknown key",
        f"{path}:3: policy.tunnel.required: 'yes' is not true or false",
        f"{path}:4: policy.tunnel.interfaces: must be a non-empty string or a list",
        f"{path}:5: policy.tunnel.allowed_networks[1]: '192.168.1.0/33' is not a network",
    ]
    assert len(lines) == len(expected), lines
    for want in expected:
        assert any(line.startswith(want) for line in lines), (want, lines)


def test_tunnel_not_a_table() -> None:
    with pytest.raises(ConfigError, match=r"^c.toml: policy.tunnel: must be a table$"):
        parse_config(tomllib.loads('[policy]\ntunnel = "wg0"\n'), "c.toml")


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["required", "interfaces", "allowed_networks", "x"]),
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(),
            st.text(max_size=20),
            st.lists(st.one_of(st.text(max_size=20), st.integers()), max_size=3),
        ),
        max_size=4,
    )
)
def test_tunnel_parser_never_crashes(raw: dict[str, object]) -> None:
    problems: list[str] = []
    try:
        parse_config({"policy": {"tunnel": raw}}, "fuzz.toml")
    except ConfigError as exc:
        problems = str(exc).split("\nnetwatch: ")
    assert all(line.startswith("fuzz.toml: policy.tunnel") for line in problems)


def test_config_show_lists_the_tunnel_keys(netwatch_cmd: list[str], tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(GOOD)
    res = subprocess.run(
        [*netwatch_cmd, "config", "show", "--config", str(path), "--format", "jsonl"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    shown = {r["key"]: (r["value"], r["from"]) for r in map(json.loads, res.stdout.splitlines())}
    assert shown["policy.tunnel.required"] == ("true", f"{path}:3")
    assert shown["policy.tunnel.interfaces"] == ("wg*, tun*, ppp0", f"{path}:4")
    assert shown["policy.tunnel.allowed_networks"] == ("192.168.1.0/24, fd00::/8", f"{path}:5")
