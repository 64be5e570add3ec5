"""`snapshot` runs the rule pack once over its sample and prints the alerts after the flows."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

PROBE = (
    "import socket,sys; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); "
    "s.bind(('0.0.0.0',0)); print(s.getsockname()[1],flush=True); sys.stdin.read()"
)


@pytest.fixture
def fake_openvpn(tmp_path: Path) -> Iterator[tuple[int, int]]:
    """A copy of the interpreter named `openvpn` holding a UDP socket on every address."""
    exe = tmp_path / "openvpn"
    shutil.copy(sys.executable, exe)
    proc = subprocess.Popen(
        [str(exe), "-c", PROBE], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    try:
        yield proc.pid, port
    finally:
        proc.kill()
        proc.wait(10)


def _snapshot(cmd: list[str], root: Path, *extra: str) -> list[dict[str, object]]:
    res = subprocess.run(
        [*cmd, "snapshot", "--format", "jsonl", *extra],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=root,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    return [json.loads(line) for line in res.stdout.splitlines()]


def test_unexpected_vpn_program_listening_is_an_alert_unless_the_policy_expects_it(
    fake_openvpn: tuple[int, int], netwatch_cmd: list[str], repo_root: Path, tmp_path: Path
) -> None:
    pid, port = fake_openvpn
    records = _snapshot(netwatch_cmd, repo_root)
    kinds = [r["type"] for r in records]
    assert kinds == sorted(kinds, key=lambda k: k != "flow")  # flows first, then alerts
    listening = [
        r for r in records if r["type"] == "flow" and r["sport"] == port and r["dst"] is None
    ]
    assert listening, "the probe's socket is missing from the sample"
    ours = [
        r
        for r in records
        if r["type"] == "alert"
        and r["rule"] == "vpn.unexpected"
        and isinstance(r["process"], dict)
        and r["process"]["pid"] == pid
    ]
    assert len(ours) == 1
    assert "openvpn" in str(ours[0]["message"])
    assert str(port) in str(ours[0]["message"])

    config = tmp_path / "config.toml"
    config.write_text('[[policy.expected_vpn]]\nname = "test"\nprocess = ["openvpn"]\n')
    records = _snapshot(netwatch_cmd, repo_root, "--config", str(config))
    assert not [
        r
        for r in records
        if r["type"] == "alert" and isinstance(r["process"], dict) and r["process"]["pid"] == pid
    ]


def test_bad_config_is_one_line_and_exit_1(
    netwatch_cmd: list[str], repo_root: Path, tmp_path: Path
) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[policy]\nexpected_vpn = 3\n")
    res = subprocess.run(
        [*netwatch_cmd, "snapshot", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=repo_root,
        check=False,
    )
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "expected_vpn" in lines[0]
    assert "Traceback" not in res.stderr
