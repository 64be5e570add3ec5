"""`netwatch snapshot` and `netwatch record` as a user runs them (subprocess, real sockets)."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from netwatch import codec
from netwatch.feed import read_recording
from netwatch.model import Alert, Direction, EnrichedFlow, Snapshot
from tests.records import snapshot


@pytest.fixture
def listener() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=cwd, check=False)


def test_table_lists_our_listener_with_process(
    netwatch_cmd: list[str], repo_root: Path, listener: int
) -> None:
    res = run([*netwatch_cmd, "snapshot"], repo_root)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    # CC and ASN columns follow when the enricher gave any flow remote information.
    assert lines[0].split()[:11] == ["PROCESS", "PID", "USER", "PROTO", "DIR", "LOCAL",
                                     "REMOTE", "STATE", "LABEL", "UP", "DOWN"]  # fmt: skip
    row = next(line for line in lines if f"127.0.0.1:{listener} " in line)
    cells = row.split()
    assert cells[1] == str(os.getpid())
    assert cells[3:9] == ["tcp", "listen", f"127.0.0.1:{listener}", "*", "LISTEN", "-"]
    summary = [line for line in lines if "sockets, sampled in" in line]
    assert len(summary) == 1 and summary[0].endswith("ms")  # other programs' alerts may follow


def test_jsonl_records_decode_with_the_codec(
    netwatch_cmd: list[str], repo_root: Path, listener: int
) -> None:
    sample = snapshot(netwatch_cmd, cwd=repo_root)
    decoded = [codec.loads(line) for line in sample.lines]
    assert decoded[: len(sample.flows)] and all(
        isinstance(f, EnrichedFlow) for f in decoded[: len(sample.flows)]
    )
    assert all(isinstance(a, Alert) for a in decoded[len(sample.flows) :])
    record = next(
        r
        for r in sample.flows
        if r["sport"] == listener and r["transport"] == "tcp" and not r.get("container")
    )
    for field in ("type", "transport", "src", "sport", "dst", "dport", "direction", "state"):
        assert field in record
    for field in ("process", "bytes_sent", "bytes_received", "app", "category", "vpn"):
        assert field in record
    for field in ("evidence", "dns_name", "sni", "remote"):
        assert field in record
    assert record["direction"] == Direction.LISTEN.value and record["dst"] is None
    assert record["process"]["pid"] == os.getpid()
    assert set(record["process"]) == {
        "pid",
        "name",
        "exe",
        "cmdline",
        "user",
        "ppid",
        "create_time",
    }


def test_geoip_db_flag_is_accepted(netwatch_cmd: list[str], repo_root: Path) -> None:
    res = run([*netwatch_cmd, "snapshot", "--help"], repo_root)
    assert res.returncode == 0 and "--geoip-db" in res.stdout


def test_record_writes_replayable_snapshots(
    netwatch_cmd: list[str], repo_root: Path, tmp_path: Path, listener: int
) -> None:
    out = tmp_path / "rec.jsonl"
    # Without capture every flow is a socket; with it, other programs' packet-only flows
    # (neighbour discovery, another namespace's traffic) would be flows too.
    res = run(
        [*netwatch_cmd, "record", str(out), "--ticks", "3", "--interval", "0", "--no-capture"],
        repo_root,
    )
    assert res.returncode == 0, res.stderr
    snaps = read_recording(out)
    assert [s.seq for s in snaps] == [1, 2, 3]
    assert all(isinstance(s, Snapshot) for s in snaps)
    for snap in snaps:
        assert any(
            ef.flow.key.local.port == listener and ef.flow.direction is Direction.LISTEN
            for ef in snap.flows
        )
        assert snap.counters.sockets == len(snap.flows)


@pytest.mark.parametrize(
    "argv",
    [
        ["record"],
        ["record", "x.jsonl", "--ticks", "0"],
        ["record", "x.jsonl", "--ticks", "many"],
        ["record", "x.jsonl", "--interval", "-1"],
        ["record", "x.jsonl", "--interval", "soon"],
        ["snapshot", "--format"],
        ["snapshot", "--format", "csv"],
        ["snapshot", "extra-argument"],
    ],
)
def test_bad_usage_is_one_line_exit_2(
    netwatch_cmd: list[str], repo_root: Path, tmp_path: Path, argv: list[str]
) -> None:
    out = tmp_path / "x.jsonl"
    res = run([*netwatch_cmd, *(str(out) if a == "x.jsonl" else a for a in argv)], repo_root)
    assert res.returncode == 2, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
    assert not out.exists()


def test_record_to_an_unwritable_place_is_one_line(
    netwatch_cmd: list[str], repo_root: Path, tmp_path: Path
) -> None:
    res = run([*netwatch_cmd, "record", str(tmp_path / "no" / "such" / "dir.jsonl")], repo_root)
    assert res.returncode == 1
    assert res.stderr.startswith("netwatch: cannot write") and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
