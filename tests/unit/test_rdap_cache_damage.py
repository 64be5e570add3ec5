"""A damaged RDAP cache is set aside for an empty one and reported; odd rows are misses."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from netwatch import paths
from netwatch.enrich.rdap_cache import OwnerCache
from netwatch.model import Owner, parse_ip
from tests.builders import T0

IP = parse_ip("90.189.249.23")
OWNER = Owner("ok", name="RU-SIBIRTELECOM", cidr="90.189.128.0/17", abuse_emails=("a@b.c",))


def _clock() -> float:
    return T0


def _good_cache(path: Path) -> bytes:
    cache = OwnerCache.open(path, _clock)
    assert cache is not None
    cache.put(IP, OWNER)
    cache.close()
    return path.read_bytes()


def test_garbage_is_set_aside_for_an_empty_cache(tmp_path: Path) -> None:
    path = tmp_path / "rdap.sqlite3"
    path.write_bytes(b"garbage" * 1000)
    cache = OwnerCache.open(path, _clock)
    assert cache is not None
    assert cache.replaced == (
        f"{path}: damaged RDAP cache (file is not a database); "
        f"set aside as {path}.damaged, started an empty one"
    )
    assert (tmp_path / "rdap.sqlite3.damaged").read_bytes() == b"garbage" * 1000
    assert cache.get(IP) is None
    cache.put(IP, OWNER)
    assert cache.get(IP) == OWNER
    cache.close()


@settings(max_examples=60)
@given(st.integers(0, 1 << 16), st.binary(min_size=1, max_size=64))
def test_damaged_bytes_give_a_working_cache_or_none(at: int, junk: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rdap.sqlite3"
        data = bytearray(_good_cache(path))
        at %= len(data)
        data[at : at + len(junk)] = junk
        path.write_bytes(bytes(data))
        cache = OwnerCache.open(path, _clock)
        if cache is None:
            return
        got = cache.get(IP)  # never raises: an answer, or a miss
        assert got is None or got == OWNER
        cache.put(IP, OWNER)
        cache.close()


JSON_TEXT = st.one_of(
    st.text(max_size=40),
    st.builds(
        lambda status, name, emails: (
            f'{{"status": {status}, "name": {name}, "abuse_emails": {emails}}}'
        ),
        st.sampled_from(['"ok"', '"unknown"', '"pending"', "1", "null"]),
        st.sampled_from(['"X"', "5", "null", "[]", '{"a": 1}']),
        st.sampled_from(['["a@b"]', "[1]", '"a@b"', "null", "{}"]),
    ),
)


@settings(max_examples=200)
@given(JSON_TEXT)
def test_rows_not_written_by_netwatch_are_misses(data: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rdap.sqlite3"
        _good_cache(path)
        with sqlite3.connect(path) as conn:
            conn.execute("UPDATE owners SET data = ?", (data,))
        conn.close()
        cache = OwnerCache.open(path, _clock)
        assert cache is not None
        got = cache.get(IP)
        cache.close()
    if got is not None:
        assert got.status in ("ok", "unknown")
        assert all(isinstance(v, str | None) for v in (got.name, got.reason, got.cidr))
        assert all(isinstance(x, str) for x in got.abuse_emails)


def test_lookup_with_a_damaged_cache_is_one_line_exit_1() -> None:
    cache = paths.cache_dir() / "rdap.sqlite3"
    cache.parent.mkdir(parents=True)
    cache.write_bytes(b"\xff" * 4096)
    root = str(Path(__file__).resolve().parent.parent.parent)
    res = subprocess.run(
        [sys.executable, "-m", "netwatch", "lookup", "--rdap", "127.0.0.1"],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "PYTHONPATH": root},
    )  # fmt: skip
    assert res.returncode == 1, res.stderr
    (line,) = res.stderr.splitlines()
    assert line.startswith(f"netwatch: skipped {cache}: damaged RDAP cache (")
    assert res.stdout.splitlines()[1].startswith("127.0.0.1")
    res = subprocess.run(  # the empty cache that replaced it is fine
        [sys.executable, "-m", "netwatch", "lookup", "--rdap", "127.0.0.1"],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "PYTHONPATH": root},
    )  # fmt: skip
    assert (res.returncode, res.stderr) == (0, "")


def test_a_changed_byte_inside_a_row_is_a_miss_not_a_wrong_owner(tmp_path: Path) -> None:
    """Hypothesis found it: a damaged digit of the stored cidr ('90.189...' -> ' 0.189...')
    left valid JSON, and the cache served the wrong network. Rows carry a digest now."""
    path = tmp_path / "rdap.sqlite3"
    _good_cache(path)
    with sqlite3.connect(path) as conn:
        changed = conn.execute(
            "UPDATE owners SET data = replace(data, '90.189.128', ' 0.189.128')"
        ).rowcount
        conn.execute("UPDATE networks SET data = replace(data, '90.189.128', ' 0.189.128')")
    conn.close()
    assert changed == 1
    cache = OwnerCache.open(path, _clock)
    assert cache is not None
    assert cache.get(IP) is None
    cache.put(IP, OWNER)
    assert cache.get(IP) == OWNER
    cache.close()
