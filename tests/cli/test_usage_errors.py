"""Bad command lines give one line on stderr and exit 2, never a traceback."""

from __future__ import annotations

import subprocess

import pytest


@pytest.mark.parametrize(
    "argv",
    [
        ["--no-such-flag"],
        ["no-such-command"],
        ["snapshot", "--format", "xml"],
        ["snapshot", "--bogus"],
        # str.isdigit() says yes to superscripts, which int() refuses: no traceback either.
        ["daemon", "--ticks", "\u00b2"],
        ["daemon", "--metrics-port", "\u00b2"],
        ["daemon", "--full-sample-every", "-1"],
        ["daemon", "--retention-days", "nan"],
    ],
)
def test_bad_usage_is_one_line_and_exit_2(netwatch_cmd: list[str], argv: list[str]) -> None:
    res = subprocess.run([*netwatch_cmd, *argv], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert "Traceback" not in res.stderr
    assert lines[0].startswith("netwatch")


def test_version(netwatch_cmd: list[str]) -> None:
    res = subprocess.run([*netwatch_cmd, "--version"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0
    assert res.stdout.startswith("netwatch ")
