"""Damaged recordings and stores: one located line, never a time no formatter can show."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netwatch import codec
from netwatch.errors import DataFileError
from netwatch.feed import read_recording
from netwatch.model import Snapshot
from netwatch.store import Store
from netwatch.stream import StreamEncoder
from netwatch.ui.fmt import when
from tests.builders import T0, make_alert, make_flow, make_snapshot

SNAPSHOTS = [
    make_snapshot(i, flows=(make_flow(bytes_sent=i),), alerts=(make_alert(),)) for i in (1, 2)
]
_ENCODER = StreamEncoder()
RECORDING = b"".join(codec.frame(_ENCODER.encode(s)) for s in SNAPSHOTS)
"""What `netwatch record` writes: a state, then a delta (which carries the changed flow)."""


def _times(snap: Snapshot) -> list[float | None]:
    out: list[float | None] = [snap.taken_at]
    for a in snap.alerts:
        out += [a.first_seen, a.last_seen]
    for ef in snap.flows:
        out += [ef.flow.first_seen, ef.flow.last_seen]
        if ef.flow.process is not None:
            out.append(ef.flow.process.create_time)
        if ef.remote is not None:
            out += [s.built for s in ef.remote.sources]
            out += [t for h in ef.remote.lists for t in (h.first_seen, h.last_seen)]
    return out


def test_a_recording_replays_its_snapshots_and_an_old_one_of_whole_snapshots_too(
    tmp_path: Path,
) -> None:
    new, old = tmp_path / "new.jsonl", tmp_path / "old.jsonl"
    new.write_bytes(RECORDING)
    old.write_text("".join(codec.dumps(s) + "\n" for s in SNAPSHOTS))  # schema 1
    assert read_recording(new) == read_recording(old) == SNAPSHOTS
    assert [json.loads(x)["type"] for x in RECORDING.splitlines()] == ["state", "delta"]


def test_a_recording_that_lost_a_line_names_the_line_after_the_gap(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl"
    more = codec.frame(_ENCODER.delta(make_snapshot(3)))
    path.write_bytes(RECORDING.splitlines(keepends=True)[0] + more)
    with pytest.raises(DataFileError, match=r"rec.jsonl:2: a delta that does not follow"):
        read_recording(path)


@pytest.mark.parametrize("value", [1e300, -1.0, 5e9])
@pytest.mark.parametrize("key", ["taken_at", "first_seen"])
def test_implausible_times_in_a_recording_name_the_line(
    tmp_path: Path, key: str, value: float
) -> None:
    first, second = RECORDING.decode().splitlines()
    doc = json.loads(second)
    if key == "taken_at":
        doc["taken_at"] = value
    else:
        doc["alerts"][0]["first_seen"] = value
    path = tmp_path / "rec.jsonl"
    path.write_text(first + "\n" + json.dumps(doc) + "\n")
    with pytest.raises(DataFileError) as err:
        read_recording(path)
    assert str(err.value) == (
        f"{path}:2: field {key!r} is not a time between 1970 and 2100: {value!r}"
    )


NUMBERS = [m.span() for m in re.finditer(rb"-?\d+(?:\.\d+)?(?:e[+-]?\d+)?", RECORDING)]


@settings(max_examples=300)
@given(
    st.sampled_from(NUMBERS),
    st.sampled_from([b"1e300", b"-5", b"NaN", b"Infinity", b"\xff", b"]", b"5e9", b'"x"']),
)
def test_damaged_recordings_load_showable_or_fail_located(
    span: tuple[int, int], junk: bytes
) -> None:
    """Every number of a real recording (times among them) replaced by a damaged value."""
    start, end = span
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rec.jsonl"
        path.write_bytes(RECORDING[:start] + junk + RECORDING[end:])
        try:
            snaps = read_recording(path)
        except DataFileError as exc:
            message = str(exc)
            assert message.startswith(f"{path}") and "\n" not in message
            return
    for snap in snaps:
        for t in _times(snap):
            when(t)  # the dashboard's detail screens format every one of these


def test_export_of_a_damaged_alert_row_is_one_line_exit_1(tmp_path: Path) -> None:
    db = tmp_path / "n.db"
    store = Store(db)
    store.save_alerts([make_alert()], T0)
    store.close()
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE alerts SET record = x'80ff'")  # a blob where JSON text was
    conn.close()
    res = subprocess.run(
        [sys.executable, "-m", "netwatch", "export", "--db", str(db), "--format", "jsonl"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert res.returncode == 1, res.stderr
    (line,) = res.stderr.splitlines()
    assert line.startswith(f"netwatch: {db}: ")
