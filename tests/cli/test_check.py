"""`netwatch check` as a user runs it: report and JSONL, located lines, the exit code.

SoftEther config files are written by the test in Debian's format into directories passed
with `--softether-dir`; the alert store is a real SQLite store the test fills. The SoftEther
lock keeps a live SoftEther test's running `vpnserver` (whose directory the check also reads)
out of the way.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from netwatch.store import Store
from tests.builders import make_alert
from tests.locks import softether_lock
from tests.softether_files import SERVER_CONFIG, client_config

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _no_softether_running() -> Iterator[None]:
    with softether_lock():
        yield


def _check(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "netwatch", "check", *args],
        capture_output=True, text=True, timeout=120, env=env, cwd=REPO,
    )  # fmt: skip


def _dir(tmp_path: Path, name: str, **files: str) -> Path:
    d = tmp_path / name
    d.mkdir()
    for fname, text in files.items():
        (d / fname).write_text(text, encoding="utf-8")
    return d


def test_vpngate_hub_is_high_and_exits_4_in_both_formats(tmp_path: Path) -> None:
    d = _dir(tmp_path, "se", **{"vpn_server.config": SERVER_CONFIG})
    common = ("--softether-dir", str(d), "--db", str(tmp_path / "none.db"))
    res = _check(*common, "--format", "jsonl")
    assert res.returncode == 4, res.stderr
    records = [json.loads(line) for line in res.stdout.splitlines()]
    relay = [r for r in records if r["id"] == f"softether.vpngate_relay:{d}/vpn_server.config"]
    assert [r["severity"] for r in relay] == ["high"], records
    assert relay[0]["type"] == "finding" and "HubDelete VPNGATE" in relay[0]["advice"]
    assert any(r["title"].startswith(f"no alert store at {tmp_path}") for r in records)
    table = _check(*common)
    assert table.returncode == 4
    assert "HIGH      VPN Gate relay: a VPNGATE hub in the SoftEther server" in table.stdout
    assert max(len(line) for line in table.stdout.splitlines()) <= 100


def test_clean_dir_exits_0_and_damaged_file_exits_1_naming_it(tmp_path: Path) -> None:
    clean = _dir(
        tmp_path, "clean", **{"vpn_server.config": SERVER_CONFIG.replace("VPNGATE", "OFFICE")}
    )
    res = _check("--softether-dir", str(clean), "--db", str(tmp_path / "none.db"))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "HIGH" not in res.stdout
    cut = client_config(("jp", "public-vpn-226.opengw.net", "VPNGATE", True, 0))[:-3]
    damaged = _dir(tmp_path, "damaged", **{"vpn_client.config": cut})
    dirs = ("--softether-dir", str(damaged), "--softether-dir", str(clean))
    res = _check(*dirs, "--db", str(tmp_path / "none.db"), "--format", "jsonl")
    assert res.returncode == 1, res.stdout + res.stderr
    records = [json.loads(line) for line in res.stdout.splitlines()]
    (bad,) = [r for r in records if r["id"].startswith("unreadable:")]
    assert bad["severity"] == "low"
    assert bad["evidence"] == [
        f"{damaged}/vpn_client.config: end of file inside the 'root' block (the file is cut short)"
    ]
    # The check went on: the account the cut file still holds is reported.
    assert any("'jp' to public-vpn-226.opengw.net:443 (VPN Gate)" in r["title"] for r in records)


def test_recent_vpngate_alert_in_store_is_high(tmp_path: Path) -> None:
    db = tmp_path / "n.db"
    store = Store(db)
    now = time.time()
    store.save_alerts(
        [
            make_alert("vpngate.list_fetch", first_seen=now - 60),
            make_alert("vpn.old", first_seen=now - 30 * 86400),
        ],
        now,
    )
    store.close()
    empty = _dir(tmp_path, "empty")
    res = _check("--softether-dir", str(empty), "--db", str(db), "--format", "jsonl")
    assert res.returncode == 4, res.stdout + res.stderr
    ids = {json.loads(line)["id"]: json.loads(line)["severity"] for line in res.stdout.splitlines()}
    assert ids["alert:vpngate.list_fetch"] == "high"
    assert "alert:vpn.old" not in ids  # older than the default 7 days
    res = _check(
        "--softether-dir", str(empty), "--db", str(db), "--since", "60d", "--format", "jsonl"
    )
    assert "alert:vpn.old" in res.stdout


def test_damaged_store_is_a_located_low_finding_and_exit_1(tmp_path: Path) -> None:
    db = tmp_path / "n.db"
    db.write_bytes(b"not a database at all" * 100)
    empty = _dir(tmp_path, "empty")
    res = _check("--softether-dir", str(empty), "--db", str(db), "--format", "jsonl")
    assert res.returncode == 1, res.stdout + res.stderr
    (bad,) = [json.loads(x) for x in res.stdout.splitlines() if "unreadable:store" in x]
    assert bad["evidence"][0].startswith(str(db))
    assert "Traceback" not in res.stderr
