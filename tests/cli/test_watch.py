"""`netwatch [watch]` on bad input: one line on stderr, the right exit code, no traceback."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.tui.helpers import DATA


def run(cmd: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*cmd, *args], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )


def one_line(res: subprocess.CompletedProcess[str]) -> str:
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert "Traceback" not in res.stderr
    return lines[0]


@pytest.mark.parametrize(
    "argv",
    [
        ["watch", "--interval", "0"],
        ["--interval", "-1"],
        ["--interval", "soon"],
        ["--live", "--attach", "/tmp/x.sock"],
        ["watch", "--replay"],
    ],
)
def test_bad_flags_exit_2(netwatch_cmd: list[str], argv: list[str]) -> None:
    res = run(netwatch_cmd, *argv)
    assert res.returncode == 2, res.stderr
    assert one_line(res).startswith("netwatch")


def test_missing_recording_is_named(netwatch_cmd: list[str], tmp_path: Path) -> None:
    res = run(netwatch_cmd, "--replay", str(tmp_path / "nope.jsonl"))
    assert res.returncode == 1
    assert "cannot read recording" in one_line(res) and "nope.jsonl" in res.stderr


def test_corrupt_recording_names_the_line(netwatch_cmd: list[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    good = (DATA / "vpngate.jsonl").read_text(encoding="utf-8").splitlines()[0]
    bad.write_text(good + "\n{not json\n", encoding="utf-8")
    res = run(netwatch_cmd, "--replay", str(bad))
    assert res.returncode == 1
    assert f"{bad}:2:" in one_line(res)


def test_attach_without_a_daemon(netwatch_cmd: list[str], tmp_path: Path) -> None:
    res = run(netwatch_cmd, "--attach", str(tmp_path / "netwatch.sock"))
    assert res.returncode == 1
    assert "no netwatch daemon answers on" in one_line(res)


def test_no_terminal_says_what_to_use_instead(netwatch_cmd: list[str]) -> None:
    res = run(netwatch_cmd, "--replay", str(DATA / "vpngate.jsonl"))
    assert res.returncode == 1
    assert "needs a terminal" in one_line(res) and "netwatch snapshot" in res.stderr
