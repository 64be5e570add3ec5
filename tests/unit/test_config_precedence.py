"""Which config file counts: the daemon reads /etc (or --config) only; `config show` says where
every effective value came from."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from netwatch import paths
from netwatch.cli import stages
from netwatch.config import config_files, load_config
from tests.conftest import run


def system_file() -> Path:
    """The site's file as this test sees it: in the test's own CONFIGURATION_DIRECTORY."""
    path = paths.system_config_file()
    assert path.parent == Path(os.environ["CONFIGURATION_DIRECTORY"])  # never the real /etc
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def user_config(tmp_path: Path) -> Path:
    """A user file (under the test's XDG_CONFIG_HOME) that sets values of its own."""
    path = Path(os.environ["XDG_CONFIG_HOME"]) / "netwatch" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('[policy]\nhome_country = "NL"\n[daemon]\ninterval = 7\n')
    return path


def test_daemon_reads_the_system_file_only(
    user_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NETWATCH_CONFIG", str(user_config))
    system = system_file()
    assert config_files(system=True) == [system]
    system.write_text('[policy]\nhome_country = "DE"\n')
    assert load_config().policy.home_country == "NL"  # a user's commands: theirs first
    assert load_config(system=True).policy.home_country == "DE"
    assert load_config(system=True).source == str(system)
    # The daemon's detector (at start and on SIGHUP) uses the same choice.
    assert stages.detector(None, system=True).policy.policy.home_country == "DE"
    explicit = tmp_path / "explicit.toml"
    explicit.write_text('[policy]\nhome_country = "JP"\n')
    assert load_config(explicit, system=True).policy.home_country == "JP"


def test_daemon_never_reads_a_users_config(
    netwatch_cmd: list[str], user_config: Path, tmp_path: Path
) -> None:
    user_config.write_text("[policy\n")  # were it read, the daemon would stop on it
    argv = [*netwatch_cmd, "daemon", "--ticks", "1", "--interval", "0.1", "--no-capture",
            "--db", str(tmp_path / "n.db"), "--socket", str(tmp_path / "n.sock")]  # fmt: skip
    res = run(argv)
    assert res.returncode == 0, res.stderr
    assert str(user_config) not in res.stderr
    system = system_file()
    system.write_text("[daemon]\ninterval = -1\n")  # the site's file is read: and refused
    refused = run(argv)
    assert refused.returncode == 1
    assert refused.stderr.startswith(f"netwatch: {system}:2: daemon.interval"), refused.stderr


def test_config_show_names_file_and_line_of_every_value(
    netwatch_cmd: list[str], user_config: Path, tmp_path: Path
) -> None:
    user_config.write_text(
        '[policy]\nhome_country = "NL"\n\n[policy.rules]\n"geo.new_country" = "log"\n'
        '[[policy.expected_vpn]]\nprocess = "openvpn"\nendpoints = ["[2001:db8::1]:443"]\n'
        "[daemon]\ninterval = 7\n"
    )
    res = run([*netwatch_cmd, "config", "show", "--format", "jsonl"])
    assert res.returncode == 0, res.stderr
    shown = {r["key"]: (r["value"], r["from"]) for r in map(json.loads, res.stdout.splitlines())}
    assert shown["policy.home_country"] == ("NL", f"{user_config}:2")
    assert shown["policy.rules.geo.new_country"] == ("log", f"{user_config}:5")
    assert shown["policy.rules.vpn.unexpected"] == ("alert", "default")
    assert shown["policy.expected_vpn[0].process"] == ("openvpn", f"{user_config}:7")
    assert shown["policy.expected_vpn[0].endpoints"] == ("[2001:db8::1]:443", f"{user_config}:8")
    assert shown["daemon.interval"] == ("7", f"{user_config}:10")
    assert shown["daemon.retention_days"] == ("30", "default")
    assert shown["daemon.full_sample_every"] == ("5", "default")
    table = run([*netwatch_cmd, "config", "show"])
    assert table.stdout.splitlines()[0] == f"# {user_config}"
    assert any(line.split() == ["daemon.interval", "7", f"{user_config}:10"] for line in
               table.stdout.splitlines())  # fmt: skip
    daemon = run([*netwatch_cmd, "config", "show", "--daemon", "--format", "jsonl"])
    assert daemon.returncode == 0, daemon.stderr
    assert str(user_config) not in daemon.stdout


def test_the_site_file_is_where_systemd_says_else_in_etc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONFIGURATION_DIRECTORY", "/etc/netwatch:/etc/other")
    assert paths.system_config_file() == Path("/etc/netwatch/config.toml")
    monkeypatch.delenv("CONFIGURATION_DIRECTORY")
    assert paths.system_config_file() == Path("/etc/netwatch/config.toml")
    monkeypatch.setenv("CONFIGURATION_DIRECTORY", "/srv/nw")
    assert paths.system_config_file() == Path("/srv/nw/config.toml")
    monkeypatch.setenv("CONFIGURATION_DIRECTORY", "relative")  # not systemd's: ignored
    assert paths.system_config_file() == Path("/etc/netwatch/config.toml")
