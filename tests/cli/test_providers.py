"""`netwatch providers` and the provider `lookup` names: as a user runs them, in a subprocess."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from netwatch.enrich.lists import History, relay_entries, save_history
from netwatch.enrich.vpngate_list import Relay
from netwatch.model import parse_ip
from tests.builders import T0


def _run(netwatch_cmd: list[str], repo_root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*netwatch_cmd, *args], capture_output=True, text=True, timeout=60, cwd=repo_root,
        check=False,
    )  # fmt: skip


def test_providers_lists_every_entry_with_country_groups_audits(
    netwatch_cmd: list[str], repo_root: Path
) -> None:
    res = _run(netwatch_cmd, repo_root, "providers")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].split()[:4] == ["ID", "NAME", "KIND", "CC"]
    vpngate = next(line for line in lines if line.startswith("vpngate "))
    assert "JP" in vpngate and "logs kept ≥3 months" in vpngate
    mullvad = next(line for line in lines if line.startswith("mullvad "))
    assert " SE " in mullvad and "14 Eyes" in mullvad
    assert any("without network access" in line for line in lines)


def test_providers_name_prints_each_fact_with_its_source(
    netwatch_cmd: list[str], repo_root: Path
) -> None:
    res = _run(netwatch_cmd, repo_root, "providers", "VPN Gate")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("VPN Gate (University of Tsukuba, JP, no audit;")
    assert "https://www.vpngate.net/en/about_abuse.aspx (checked 2026-12-02)" in res.stdout
    by_label = _run(netwatch_cmd, repo_root, "providers", "wireguard")
    assert by_label.stdout.startswith("Self-hosted or unrecognised server")
    jsonl = _run(netwatch_cmd, repo_root, "providers", "protonvpn", "--format", "jsonl")
    (record,) = map(json.loads, jsonl.stdout.splitlines())
    assert record["country"] == "CH" and record["audits"][0]["auditor"] == "Securitum"


def test_an_unknown_name_is_one_line_and_exit_2(netwatch_cmd: list[str], repo_root: Path) -> None:
    res = _run(netwatch_cmd, repo_root, "providers", "no such vpn")
    assert res.returncode == 2
    assert res.stdout == ""
    assert res.stderr.startswith("netwatch: providers: no provider 'no such vpn' (known: ")
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr


def test_a_damaged_file_is_one_located_line_and_exit_1(
    netwatch_cmd: list[str], repo_root: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "providers.toml"
    bad.write_text('version = "1"\nchecked = "2026-12-02"\n[[provider]]\nid = "Bad Id"\n')
    res = _run(netwatch_cmd, repo_root, "providers", "--file", str(bad))
    assert res.returncode == 1
    assert (
        res.stderr
        == f"netwatch: {bad}: provider[0].id: 'Bad Id' is not an id (lower case, digits, '-')\n"
    )
    bad.write_bytes(b"\xff\xfe[[")
    res = _run(netwatch_cmd, repo_root, "providers", "--file", str(bad))
    assert res.returncode == 1 and res.stderr.count("\n") == 1 and "Traceback" not in res.stderr


def test_lookup_names_the_provider_of_a_listed_address(
    netwatch_cmd: list[str], repo_root: Path
) -> None:
    relay = Relay("public-vpn-226", parse_ip("219.100.37.226"), "JP", 100, 12, ports=())
    save_history(History("vpngate", {}).merge(relay_entries([relay]), T0, "test"))
    res = _run(netwatch_cmd, repo_root, "lookup", "219.100.37.226", "8.8.8.8", "--format", "jsonl")
    assert res.returncode == 0, res.stderr
    records = {r["ip"]: r for r in map(json.loads, res.stdout.splitlines())}
    provider = records["219.100.37.226"]["provider"]
    assert (provider["name"], provider["country"]) == ("VPN Gate", "JP")
    assert "provider" not in records["8.8.8.8"]
    table = _run(netwatch_cmd, repo_root, "lookup", "219.100.37.226", "8.8.8.8")
    header, relay_row, other_row = table.stdout.splitlines()
    assert header.split()[-1] == "PROVIDER"
    assert relay_row.endswith("VPN Gate (JP; 0 audits; 0 incidents)")
    assert other_row.endswith("-")
