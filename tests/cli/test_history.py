"""`netwatch history`: totals from a store's usage history in every format; bad input is one
line and a non-zero exit."""

from __future__ import annotations

import csv
import io
import json
import subprocess
from pathlib import Path

import pytest

from netwatch.store import Store
from netwatch.store.rollup import SPAN, UsageRow

BASE = 1_700_002_800  # 2023-11-14T23:00:00Z
CURL = ("curl", "/usr/bin/curl", "198.51.100.7", "US", 64496, "Example US", None, "tcp", "tls")
SSH = ("ssh", "/usr/bin/ssh", "203.0.113.9", "JP", 64500, "Example JP", "ExampleVPN", "tcp", None)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "n.db"
    store = Store(path)
    rows = [
        UsageRow(BASE + m * SPAN, SPAN, CURL, 100, 1000, 1 if m == 0 else 0) for m in range(120)
    ]
    rows.append(UsageRow(BASE + 90 * SPAN, SPAN, SSH, 5_000, 50, 2))
    store.save_flows([], rows)
    store.close()
    return path


def history(netwatch_cmd: list[str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*netwatch_cmd, "history", *argv], capture_output=True, text=True, timeout=60
    )


def test_by_process_as_jsonl_and_table(netwatch_cmd: list[str], db: Path) -> None:
    res = history(netwatch_cmd, "--db", str(db), "--format", "jsonl")
    assert res.returncode == 0, res.stderr
    got = [json.loads(line) for line in res.stdout.splitlines()]
    assert [(g["process_name"], g["bytes_out"], g["bytes_in"], g["connections"]) for g in got] == [
        ("curl", 12_000, 120_000, 1),
        ("ssh", 5_000, 50, 2),
    ]
    table = history(netwatch_cmd, "--db", str(db)).stdout.splitlines()
    assert table[0].split()[:4] == ["PROCESS_NAME", "PROCESS_EXE", "SENT", "RECEIVED"]
    assert table[1].split()[:2] == ["curl", "/usr/bin/curl"]


def test_window_filters_and_time_grouping(netwatch_cmd: list[str], db: Path) -> None:
    res = history(
        netwatch_cmd, "--db", str(db), "--format", "csv", "--by", "country",
        "--since", "2023-11-15T00:30:00Z", "--until", "2023-11-15T01:00Z",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert [(r["country"], r["bytes_out"]) for r in rows] == [("US", "3000"), ("JP", "5000")]
    res = history(netwatch_cmd, "--db", str(db), "--format", "jsonl", "--by", "hour",
                  "--process", "/usr/bin/curl")  # fmt: skip
    got = [json.loads(line) for line in res.stdout.splitlines()]
    assert [(g["start"], g["bytes_out"]) for g in got] == [
        ("2023-11-14T23:00:00Z", 6000),
        ("2023-11-15T00:00:00Z", 6000),
    ]
    res = history(netwatch_cmd, "--db", str(db), "--format", "jsonl", "--remote", "203.0.113.9",
                  "--by", "provider")  # fmt: skip
    assert [json.loads(line)["provider"] for line in res.stdout.splitlines()] == ["ExampleVPN"]
    res = history(netwatch_cmd, "--db", str(db), "--country", "de")
    assert res.stdout.strip() == "no usage history in this window"


def test_ecs_documents_name_the_process_and_the_remote(netwatch_cmd: list[str], db: Path) -> None:
    res = history(netwatch_cmd, "--db", str(db), "--format", "ecs", "--by", "remote",
                  "--process", "ssh")  # fmt: skip
    assert res.returncode == 0, res.stderr
    (doc,) = [json.loads(line) for line in res.stdout.splitlines()]
    assert doc["event"]["kind"] == "metric" and doc["event"]["category"] == ["network"]
    assert doc["destination"] == {
        "ip": "203.0.113.9", "bytes": 50, "geo": {"country_iso_code": "JP"},
        "as": {"organization": {"name": "Example JP"}},
    }  # fmt: skip
    assert doc["source"] == {"bytes": 5000} and doc["network"]["bytes"] == 5050
    # The window covers all the history: whole hours are read from their hour rows.
    assert doc["@timestamp"] == doc["event"]["start"] == "2023-11-15T00:00:00Z"
    assert doc["event"]["end"] == "2023-11-15T01:00:00Z"


def test_output_file_is_private(netwatch_cmd: list[str], db: Path, tmp_path: Path) -> None:
    out = tmp_path / "h.csv"
    res = history(netwatch_cmd, "--db", str(db), "--format", "csv", "-o", str(out))
    assert res.returncode == 0, res.stderr
    assert out.stat().st_mode & 0o777 == 0o600
    assert out.read_bytes().count(b"\r\n") == 3  # RFC 4180 line ends: header and two rows


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["--since", "yesterday"], 2),
        (["--by", "colour"], 2),
        (["--top", "0"], 2),
        (["--since", "1h", "--until", "2h"], 1),
    ],
)
def test_bad_arguments_are_one_line(
    netwatch_cmd: list[str], db: Path, argv: list[str], code: int
) -> None:
    res = history(netwatch_cmd, "--db", str(db), *argv)
    assert res.returncode == code
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr


def test_missing_and_damaged_stores_are_one_line(netwatch_cmd: list[str], tmp_path: Path) -> None:
    res = history(netwatch_cmd, "--db", str(tmp_path / "none.db"))
    assert res.returncode == 1 and res.stderr.startswith("netwatch: no netwatch database")
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"not sqlite" * 500)
    res = history(netwatch_cmd, "--db", str(bad))
    assert res.returncode == 1
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr


def test_watch_with_a_missing_store_is_one_line(netwatch_cmd: list[str], tmp_path: Path) -> None:
    res = subprocess.run(
        [*netwatch_cmd, "watch", "--db", str(tmp_path / "none.db"), "--live"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert res.returncode == 1
    assert res.stderr.strip() == f"netwatch: no netwatch database at {tmp_path / 'none.db'}"


def test_attach_to_no_daemon_or_with_db_is_one_line(
    netwatch_cmd: list[str], tmp_path: Path
) -> None:
    for args, words in (
        (["--attach", str(tmp_path / "none.sock")], "no netwatch daemon answers on"),
        (["--attach", str(tmp_path / "none.sock"), "--db", str(tmp_path / "n.db")], "give one"),
    ):
        res = history(netwatch_cmd, *args)
        assert res.returncode != 0
        assert res.stderr.count("\n") == 1 and words in res.stderr, res.stderr
