"""Stored VPN Gate history reaches every command that enriches, without extra flags."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from netwatch.enrich.lists import History, relay_entries, save_history
from netwatch.enrich.vpngate_list import Relay
from netwatch.model import parse_ip
from tests.builders import T0


def test_lookup_reports_membership_of_a_stored_vpngate_relay(
    netwatch_cmd: list[str], repo_root: Path
) -> None:
    relay = Relay("public-vpn-226", parse_ip("219.100.37.226"), "JP", 100, 12, ports=())
    save_history(History("vpngate", {}).merge(relay_entries([relay]), T0, "test"))
    res = subprocess.run(
        [*netwatch_cmd, "lookup", "219.100.37.226", "8.8.8.8", "--format", "jsonl"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=repo_root,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    records = {r["ip"]: r for r in map(json.loads, res.stdout.splitlines())}
    assert [h["list"] for h in records["219.100.37.226"]["lists"]] == ["vpngate"]
    assert records["8.8.8.8"]["lists"] == []
