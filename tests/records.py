"""`snapshot --format jsonl` as the tests read it: flow records and alert records apart.

On a real machine other programs' flows are in every sample and the rule pack may raise
alerts on them (`process.first_connection` for any program with a non-loopback connection),
so a test picks its own flows out of the flow records and never assumes it is alone.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Record = dict[str, Any]


@dataclass(frozen=True)
class Sample:
    """One `snapshot --format jsonl` run: its flow and alert records, and stderr."""

    flows: list[Record]
    alerts: list[Record]
    lines: list[str]
    stderr: str


def snapshot(cmd: list[str], *extra: str, cwd: Path | None = None, timeout: float = 120) -> Sample:
    """Run `snapshot --format jsonl`; assert it succeeded without a traceback."""
    res = subprocess.run(
        [*cmd, "snapshot", "--format", "jsonl", *extra],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    lines = res.stdout.splitlines()
    records = [json.loads(line) for line in lines]
    kinds = [r["type"] for r in records]
    assert set(kinds) <= {"flow", "alert"}, set(kinds)
    assert kinds == sorted(kinds, key=lambda k: k != "flow")  # flows first, then alerts
    return Sample(
        flows=[r for r in records if r["type"] == "flow"],
        alerts=[r for r in records if r["type"] == "alert"],
        lines=lines,
        stderr=res.stderr,
    )
