"""`netwatch lookup`: the acceptance addresses, formats, bad input, --rdap offline, fuzzing."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from netwatch.cli import main
from tests.mmdb import write_mmdb

ACCEPTANCE = [
    "90.189.249.23",
    "133.11.0.1",
    "8.8.8.8",
    "2001:4860:4860::8888",
    "::ffff:90.189.249.23",
    "192.168.1.5",
]


def run(
    cmd: list[str], *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=60, env=env)


def _can_unshare_net() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "--net", "--", "true"], capture_output=True, timeout=30)
    return probe.returncode == 0


def check_acceptance(records: list[dict[str, object]]) -> None:
    got = [(r["query"], r["scope"], r["country"], r["asn"]) for r in records]
    assert got[0] == ("90.189.249.23", "global", "RU", 12389)
    assert got[1] == ("133.11.0.1", "global", "JP", 2501)
    assert got[2] == ("8.8.8.8", "global", "US", 15169)
    assert records[2]["jurisdiction"] == ["5 Eyes", "9 Eyes", "14 Eyes"]
    assert got[3][3] == 15169 and got[3][1] == "global"  # country per the data (DB-IP: CA)
    assert got[4] == ("::ffff:90.189.249.23", "global", "RU", 12389)
    assert records[4]["ip"] == "90.189.249.23"
    assert got[5] == ("192.168.1.5", "private", None, None)
    assert records[5]["sources"] == [] and records[5]["owner"] is None
    for r in records[:5]:
        assert r["as_org"]
        assert r["sources"][0]["type"].startswith("netwatch-Country-ASN")  # type: ignore[index]


def test_acceptance_from_the_checkout(netwatch_cmd: list[str], repo_root: Path) -> None:
    res = subprocess.run(
        [*netwatch_cmd, "lookup", *ACCEPTANCE, "--format", "jsonl"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=repo_root,
    )
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""
    check_acceptance([json.loads(line) for line in res.stdout.splitlines()])


def test_acceptance_after_installing_the_wheel_without_home_or_network(
    tmp_path: Path, repo_root: Path
) -> None:
    """Build the wheel, install it elsewhere, run it with HOME nowhere (and no network if root)."""
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(dist)],
        cwd=repo_root,
        check=True,
        capture_output=True,
        timeout=120,
    )
    (wheel,) = dist.glob("*.whl")
    site = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-index",
            "-q",
            "--target",
            str(site),
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert (site / "netwatch" / "_geoip" / "netwatch-country-asn.mmdb").stat().st_size > 10_000_000
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path / "nowhere"), "PYTHONPATH": str(site)}
    cmd = [sys.executable, "-m", "netwatch", "lookup", *ACCEPTANCE, "--format", "jsonl"]
    if _can_unshare_net():
        cmd = ["unshare", "--net", "--", *cmd]  # a network namespace with no interfaces up
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env, cwd=workdir)
    assert res.returncode == 0, res.stderr
    records = [json.loads(line) for line in res.stdout.splitlines()]
    check_acceptance(records)
    assert records[0]["sources"][0]["file"].startswith(str(site))


def test_table_format_and_attribution_in_help(netwatch_cmd: list[str]) -> None:
    res = run(netwatch_cmd, "lookup", "8.8.8.8", "10.0.0.1")
    assert res.returncode == 0, res.stderr
    header, google, private = res.stdout.splitlines()
    assert header.split()[:3] == ["IP", "SCOPE", "CC"]
    assert google.split()[:4] == ["8.8.8.8", "global", "US", "AS15169"]
    assert "5 Eyes" in google
    assert private.split()[:3] == ["10.0.0.1", "private", "-"]
    helptext = run(netwatch_cmd, "lookup", "--help").stdout
    assert "DB-IP" in helptext


def test_bad_addresses_are_one_line_each_and_exit_2(netwatch_cmd: list[str]) -> None:
    res = run(netwatch_cmd, "lookup", "8.8.8.8", "not-an-ip", "300.1.1.1", "--format", "jsonl")
    assert res.returncode == 2
    assert [json.loads(x)["ip"] for x in res.stdout.splitlines()] == ["8.8.8.8"]
    lines = res.stderr.splitlines()
    assert lines == [
        "netwatch: lookup: 'not-an-ip' is not an IP address",
        "netwatch: lookup: '300.1.1.1' is not an IP address",
    ]


@pytest.mark.parametrize("content", [b"", b"garbage" * 1000])
def test_corrupt_geoip_db_is_one_line_exit_1(
    netwatch_cmd: list[str], tmp_path: Path, content: bytes
) -> None:
    bad = tmp_path / "broken.mmdb"
    bad.write_bytes(content)
    res = run(netwatch_cmd, "lookup", "8.8.8.8", "--geoip-db", str(bad))
    assert res.returncode == 1
    assert res.stdout == ""
    (line,) = res.stderr.splitlines()
    assert str(bad) in line and "Traceback" not in line


def test_truncated_bundled_file_given_explicitly(
    netwatch_cmd: list[str], tmp_path: Path, repo_root: Path
) -> None:
    data = (repo_root / "geoip" / "netwatch-country-asn.mmdb").read_bytes()
    cut = tmp_path / "truncated.mmdb"
    cut.write_bytes(data[: len(data) // 3])
    res = run(netwatch_cmd, "lookup", "8.8.8.8", "--geoip-db", str(cut))
    assert res.returncode == 1
    (line,) = res.stderr.splitlines()
    assert line.startswith(f"netwatch: {cut}:")


def test_explicit_db_maps_documentation_ranges(netwatch_cmd: list[str], tmp_path: Path) -> None:
    db = write_mmdb(tmp_path / "lab.mmdb", {"198.51.100.0/24": ("JP", 64500, "Lab JP")})
    res = run(
        netwatch_cmd,
        "lookup",
        "198.51.100.7",
        "203.0.113.1",
        "--geoip-db",
        str(db),
        "--format",
        "jsonl",
    )
    assert res.returncode == 0, res.stderr
    mapped, unmapped = (json.loads(x) for x in res.stdout.splitlines())
    assert (mapped["scope"], mapped["country"], mapped["asn"]) == ("documentation", "JP", 64500)
    assert mapped["sources"][0]["file"] == str(db)
    assert (unmapped["scope"], unmapped["country"]) == ("documentation", None)


def test_rdap_with_no_server_says_owner_unknown(netwatch_cmd: list[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "NETWATCH_RDAP_URL": f"http://127.0.0.1:{port}"}
    res = run(
        netwatch_cmd,
        "lookup",
        "--rdap",
        "90.189.249.23",
        "192.168.1.5",
        "--format",
        "jsonl",
        env=env,
    )
    assert res.returncode == 0, res.stderr
    remote, local = (json.loads(x) for x in res.stdout.splitlines())
    assert remote["owner"]["status"] == "unknown"
    assert "unreachable" in remote["owner"]["reason"]
    assert local["owner"] is None
    table = run(netwatch_cmd, "lookup", "--rdap", "90.189.249.23", env=env)
    assert "owner unknown (RDAP server unreachable" in table.stdout


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.one_of(st.text(max_size=60), st.ip_addresses().map(str)))
@example("")
@example("-1")
@example("--rdap")
@example("--format")
@example("-h")
@example("--")
@example("::ffff:1.2.3.4%eth0")
@example("1.2.3.4\n5.6.7.8")
@example("\x00")
def test_any_string_gives_a_record_or_one_line_error(
    capsys: pytest.CaptureFixture[str], value: str
) -> None:
    try:
        code = main(["lookup", "--format", "jsonl", "--", value])
    except SystemExit as exc:  # argparse (not expected after "--", but must be one line)
        code = exc.code  # type: ignore[assignment]
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    if code == 0:
        (line,) = out.splitlines()
        record = json.loads(line)
        assert record["query"] == value
        assert err == ""
    else:
        assert code == 2
        assert out == ""
        assert len(err.strip().splitlines()) == 1, err
