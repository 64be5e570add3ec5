"""`netwatch export` end to end on a store: filters, formats, --since/--until, bad values."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from netwatch.cli.export import parse_time
from netwatch.model import Severity
from netwatch.store import store_alerts
from tests.builders import make_alert

NOW = time.time()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "n.db"
    store_alerts(
        path,
        [
            make_alert("r.old", Severity.LOW, first_seen=NOW - 3 * 86400, alert_id="old"),
            make_alert("r.hour", Severity.HIGH, first_seen=NOW - 1800, alert_id="hour"),
            make_alert("r.now", Severity.CRITICAL, first_seen=NOW - 10, alert_id="now"),
        ],
        now=NOW,
    )
    return path


def _export(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "netwatch", "export", "--db", str(db), *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def _ids(res: subprocess.CompletedProcess[str]) -> list[str]:
    assert res.returncode == 0, res.stderr
    return [json.loads(x)["id"] for x in res.stdout.splitlines()]


def test_filters(db: Path) -> None:
    assert _ids(_export(db)) == ["old", "hour", "now"]
    assert _ids(_export(db, "--since", "1h")) == ["hour", "now"]
    assert _ids(_export(db, "--since", "2d")) == ["hour", "now"]
    assert _ids(_export(db, "--since", "4d", "--until", "1h")) == ["old"]
    assert _ids(_export(db, "--severity", "high")) == ["hour", "now"]
    assert _ids(_export(db, "--rule", "r.now")) == ["now"]
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(NOW - 3600))
    assert _ids(_export(db, "--since", iso)) == ["hour", "now"]


def test_output_file_csv(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "alerts.csv"
    res = _export(db, "--format", "csv", "-o", str(out))
    assert res.returncode == 0, res.stderr
    assert res.stdout == ""
    raw = out.read_bytes()
    assert raw.count(b"\r\n") == 4
    rows = list(csv.DictReader(io.StringIO(raw.decode(), newline="")))
    assert [r["id"] for r in rows] == ["old", "hour", "now"]


@pytest.mark.parametrize(
    "argv",
    [
        ["--since", "yesterday"],
        ["--since", "1y"],
        ["--until", "2024-13-45"],
        ["--severity", "huge"],
        ["--format", "xml"],
    ],
)
def test_bad_values_one_line_exit_2(db: Path, argv: list[str]) -> None:
    res = _export(db, *argv)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert "Traceback" not in res.stderr


def test_missing_or_foreign_db_is_one_line_exit_1(tmp_path: Path) -> None:
    res = _export(tmp_path / "nope.db")
    assert res.returncode == 1
    assert res.stderr.strip().splitlines() == [
        f"netwatch: no netwatch database at {tmp_path}/nope.db"
    ]
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"x" * 4096)
    res = _export(junk)
    assert res.returncode == 1
    assert len(res.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "syslog", "ecs"])
def test_missing_db_writes_nothing_before_the_error(tmp_path: Path, fmt: str) -> None:
    res = _export(tmp_path / "nope.db", "--format", fmt)
    assert (res.returncode, res.stdout) == (1, "")
    assert res.stderr.strip().splitlines() == [
        f"netwatch: no netwatch database at {tmp_path}/nope.db"
    ]
    out = tmp_path / "alerts.csv"
    res = _export(tmp_path / "nope.db", "--format", fmt, "-o", str(out))
    assert res.returncode == 1
    assert not out.exists()


def test_parse_time_forms() -> None:
    now = 1_700_000_000.0
    assert parse_time("1h", now) == now - 3600
    assert parse_time("2d", now) == now - 2 * 86400
    assert parse_time("90s", now) == now - 90
    assert parse_time("2023-11-14T22:13:20Z") == now
    assert parse_time("2023-11-14T23:13:20+01:00") == now
