"""`netwatch watch --alert ID`: an id that is not an alert's is one line and exit 2, before any UI.

The desktop notification's "open" action passes the id as an argument; anything not shaped
`rule:digest:time` is refused (stdin is not a terminal here, so a command that got past the
check would fail later, with exit 1 and "needs a terminal").
"""

from __future__ import annotations

import subprocess

import pytest

from tests.tui.helpers import DATA


def run(cmd: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*cmd, *args], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )


@pytest.mark.parametrize(
    "value",
    [
        "vpn",
        "vpngate.relay_inbound:1700000004",
        "vpngate.relay_inbound:0a1b2c3d4:1700000004",  # digest one short
        "vpngate.relay_inbound:0a1b2c3d4e:17000x",
        "--output=/etc/passwd",
        "vpngate.relay_inbound:0a1b2c3d4e:1700000004\n--x",
        "",
    ],
)
def test_a_malformed_alert_id_is_one_line_and_exit_2(netwatch_cmd: list[str], value: str) -> None:
    res = run(netwatch_cmd, "watch", "--replay", str(DATA / "vpngate.jsonl"), f"--alert={value}")
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert lines[0].startswith("netwatch watch: argument --alert:")
    assert "is not an alert id (rule:digest:time" in lines[0]
    assert res.stdout == ""


def test_a_well_formed_alert_id_passes_to_the_dashboard(netwatch_cmd: list[str]) -> None:
    good = "vpngate.relay_inbound:0a1b2c3d4e:1700000004"
    res = run(netwatch_cmd, "--replay", str(DATA / "vpngate.jsonl"), "--alert", good)
    assert res.returncode == 1  # accepted; the dashboard then wants a terminal
    assert "needs a terminal" in res.stderr and len(res.stderr.strip().splitlines()) == 1
