"""Without root: `snapshot` run as `nobody` lists what it can, says what is missing, no traceback.

A root-owned listener (this test) must appear with `process: null`; a listener owned by
`nobody` must be attributed to its process; stderr is one line naming sudo and the
daemon's group, and never advising capabilities on an interpreter.
The checkout may not be readable by `nobody` (e.g. under /root), so netwatch and psutil are
copied to a world-readable temporary folder first.
"""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import nobody
from tests.advice import assert_no_capability_advice
from tests.conftest import requires_root, requires_tools

HOLD = (
    "import socket,sys; s=socket.socket(); s.bind(('127.0.0.1',0)); s.listen(); "
    "print(s.getsockname()[1], flush=True); sys.stdin.read()"
)


@pytest.fixture
def readable_copy(repo_root: Path) -> Iterator[Path]:
    """netwatch and the installed packages `snapshot` imports, in a folder anyone can read."""
    with nobody.readable_copy(repo_root) as base:
        yield base


@pytest.mark.live
@requires_root
@requires_tools("setpriv")
@pytest.mark.timeout(120)
def test_snapshot_as_nobody(readable_copy: Path) -> None:
    python = nobody.python_for_nobody(readable_copy)
    holder = subprocess.Popen(
        nobody.as_nobody(["-c", HOLD], readable_copy, python),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=readable_copy,
    )
    root_listener = socket.socket()
    try:
        root_listener.bind(("127.0.0.1", 0))
        root_listener.listen()
        root_port = root_listener.getsockname()[1]
        assert holder.stdout is not None
        nobody_port = int(holder.stdout.readline())
        res = subprocess.run(
            nobody.as_nobody(
                ["-m", "netwatch", "snapshot", "--format", "jsonl"], readable_copy, python
            ),
            capture_output=True,
            text=True,
            timeout=60,
            cwd=readable_copy,
            check=False,
        )
        table = subprocess.run(
            nobody.as_nobody(["-m", "netwatch", "snapshot"], readable_copy, python),
            capture_output=True,
            text=True,
            timeout=60,
            cwd=readable_copy,
            check=False,
        )
    finally:
        root_listener.close()
        if holder.stdin is not None:
            holder.stdin.close()
        holder.wait(10)
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("netwatch: ")
    assert "sudo" in lines[0] and "netwatch group" in lines[0]
    assert_no_capability_advice(lines[0])
    records = [json.loads(line) for line in res.stdout.splitlines()]
    (root_rec,) = [r for r in records if r["transport"] == "tcp" and r["sport"] == root_port]
    assert root_rec["direction"] == "listen" and root_rec["process"] is None
    (own,) = [r for r in records if r["transport"] == "tcp" and r["sport"] == nobody_port]
    assert own["process"] is not None and own["process"]["user"] == "nobody"
    assert own["process"]["pid"] == holder.pid  # setpriv and env exec, keeping the pid
    assert table.returncode == 0 and "Traceback" not in table.stderr
    assert len(table.stderr.strip().splitlines()) == 1
    assert any(str(root_port) in row and row.startswith("?") for row in table.stdout.splitlines())
