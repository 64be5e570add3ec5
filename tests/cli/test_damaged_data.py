"""Damaged data files (list histories, GeoIP files): one located line and exit 1; the daemon
(which keeps running) names them.

Each kind of damage is written into the stored VPN Gate history for 127.0.0.1, and a loopback
connection (or a capture of a packet to it) makes every command match that address, so a
value that slipped through the loader would be formatted (NaN, 1e300) on the way out.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import wrpcap

from netwatch.enrich.lists import history_path

T0 = 1_700_000_000.0
GOOD = {"ip": "127.0.0.1", "first_seen": T0, "last_seen": T0, "ports": ["tcp/443"]}


def _history(*entries: dict[str, object], **top: object) -> bytes:
    doc = {"schema": 1, "list": "vpngate", "updated": T0, "source": "t", **top}
    doc["entries"] = list(entries)
    return json.dumps(doc).encode()


DAMAGE = {
    "invalid_utf8": (
        _history({**GOOD, "names": ["x"]}).replace(b'"x"', b'"\xff\xfe"'),
        "not UTF-8 text",
    ),
    "nan_time": (_history({**GOOD, "first_seen": float("nan")}), "entries[0].first_seen"),
    "negative_time": (_history({**GOOD, "first_seen": -5.0}), "entries[0].first_seen"),
    "huge_time": (_history({**GOOD, "last_seen": 1e300}, updated=1e300), "entries[0].last_seen"),
    "inf_time": (_history({**GOOD, "last_seen": float("inf")}), "entries[0].last_seen"),
    "bad_port": (_history({**GOOD, "ports": ["tcp/99999"]}), "entries[0].ports"),
    "bad_address": (_history({**GOOD, "ip": "127.0.0.999"}), "entries[0].ip"),
    "wrong_types": (_history({**GOOD, "names": "vpn1", "exit": "no"}), "entries[0].exit"),
    "not_an_object": (b"[1, 2, 3]", "not an object"),
}


@pytest.fixture
def env() -> dict[str, str]:
    """This checkout's netwatch with the test's isolated HOME/XDG (conftest)."""
    root = str(Path(__file__).resolve().parent.parent.parent)
    return {**os.environ, "PYTHONPATH": root}


@pytest.fixture
def loopback_pair() -> Iterator[None]:
    """A held TCP connection to 127.0.0.1, so a daemon tick has a flow to the listed address."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        client = socket.create_connection(server.getsockname(), timeout=5)
        peer, _ = server.accept()
        with client, peer:
            yield


def _damage(kind: str) -> tuple[Path, str]:
    data, where = DAMAGE[kind]
    path = history_path("vpngate")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path, where


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "netwatch", *args],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )  # fmt: skip


def _one_located_line(res: subprocess.CompletedProcess[str], path: Path, where: str) -> None:
    assert "Traceback" not in res.stderr
    (line,) = res.stderr.splitlines()
    assert line.startswith(f"netwatch: skipped {path}: "), line
    assert where in line


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_lookup_and_lists_status_say_which_file_and_exit_1(kind: str, env: dict[str, str]) -> None:
    path, where = _damage(kind)
    res = _run(env, "lookup", "127.0.0.1", "--format", "jsonl")
    assert res.returncode == 1, res.stderr
    _one_located_line(res, path, where)
    (record,) = map(json.loads, res.stdout.splitlines())  # the other files still answered
    assert record["ip"] == "127.0.0.1" and record["lists"] == []
    res = _run(env, "lists", "status")
    assert res.returncode == 1, res.stderr
    _one_located_line(res, path, where)
    assert res.stdout.startswith("tor ")  # the undamaged list is still shown


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_analyze_says_which_file_and_exit_1(kind: str, env: dict[str, str], tmp_path: Path) -> None:
    path, where = _damage(kind)
    capture = tmp_path / "c.pcap"
    frame = Ether() / IP(src="192.0.2.1", dst="127.0.0.1") / UDP(sport=4000, dport=443) / Raw(b"x")
    frame.time = T0
    wrpcap(str(capture), [frame])
    res = _run(env, "analyze", str(capture), "--format", "jsonl")
    assert res.returncode == 1, res.stderr
    _one_located_line(res, path, where)
    (flow,) = map(json.loads, res.stdout.splitlines())
    assert flow["dst"] == "127.0.0.1"


@pytest.mark.daemon
@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", sorted(DAMAGE))
@pytest.mark.usefixtures("loopback_pair")
def test_daemon_runs_its_ticks_and_reports_the_skipped_file(
    kind: str, env: dict[str, str], tmp_path: Path
) -> None:
    path, where = _damage(kind)
    res = _run(
        env, "daemon", "--db", str(tmp_path / "d.db"), "--socket", str(tmp_path / "d.sock"),
        "--ticks", "3", "--interval", "0.1", "--no-capture",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    (line,) = [x for x in res.stderr.splitlines() if "damaged data file" in x]
    assert f": {path}: " in line and where in line


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.daemon
@pytest.mark.timeout(120)
@pytest.mark.usefixtures("loopback_pair")
def test_daemon_metrics_name_the_skipped_file(env: dict[str, str], tmp_path: Path) -> None:
    path, _ = _damage("nan_time")
    port = _free_port()
    daemon = subprocess.Popen(
        [sys.executable, "-m", "netwatch", "daemon", "--db", str(tmp_path / "d.db"),
         "--socket", str(tmp_path / "d.sock"), "--interval", "0.1", "--no-capture",
         "--metrics-port", str(port)],
        env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    wanted = f'netwatch_data_file_skipped{{file="{path}"}} 1.0'
    body = ""
    try:
        deadline = time.monotonic() + 30
        while wanted not in body and time.monotonic() < deadline and daemon.poll() is None:
            time.sleep(0.1)
            try:
                url = f"http://127.0.0.1:{port}/metrics"
                body = urllib.request.urlopen(url, timeout=2).read().decode()  # noqa: S310
            except OSError:
                continue
        assert wanted in body
        time.sleep(0.5)  # several more ticks over the loopback flow: still running
        assert daemon.poll() is None
    finally:
        daemon.terminate()
        _, err = daemon.communicate(timeout=10)
    assert daemon.returncode == 0, err


# ---------------------------------------------------------------- GeoIP files


def _mmdb_with_bad_data(path: Path) -> Path:
    """An mmdb that opens (metadata and tree intact, 8.8.8.8 absent, so the open-time probe
    passes) but whose data section is overwritten: looking 127.0.0.1 up fails to decode."""
    from tests.mmdb import write_mmdb

    data = bytearray(write_mmdb(path, {"127.0.0.0/8": ("JP", 64500, "Lab")}).read_bytes())
    start = data.find(bytes(16)) + 16  # the data section follows 16 zero bytes
    end = data.rfind(b"\xab\xcd\xefMaxMind.com")
    data[start:end] = b"\xff" * (end - start)
    path.write_bytes(bytes(data))
    return path


@pytest.mark.daemon
@pytest.mark.timeout(120)
@pytest.mark.usefixtures("loopback_pair")
def test_daemon_keeps_running_when_a_geoip_record_fails_to_decode(
    env: dict[str, str], tmp_path: Path
) -> None:
    bad = _mmdb_with_bad_data(tmp_path / "lab.mmdb")
    res = _run(
        env, "daemon", "--db", str(tmp_path / "d.db"), "--socket", str(tmp_path / "d.sock"),
        "--ticks", "3", "--interval", "0.1", "--no-capture", "--geoip-db", str(bad),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    (line,) = [x for x in res.stderr.splitlines() if "damaged data file" in x]
    assert f": {bad}: corrupt record for 127.0.0.1" in line


def test_lookup_names_a_discovered_damaged_geoip_file_and_exits_1(
    env: dict[str, str], tmp_path: Path
) -> None:
    gdir = tmp_path / "GeoIP"
    gdir.mkdir()
    (gdir / "GeoLite2-City.mmdb").write_bytes(b"\xff" * 4096)
    res = _run({**env, "GEOIPUPDATE_DB_DIR": str(gdir)}, "lookup", "8.8.8.8")
    assert res.returncode == 1, res.stderr
    (line,) = res.stderr.splitlines()
    assert line.startswith(f"netwatch: skipped {gdir / 'GeoLite2-City.mmdb'}: not a valid")
    assert "AS15169" in res.stdout  # the bundled file still answered


PROBE = """
import sys
from pathlib import Path
from netwatch.enrich.geo import GeoDatabase, GeoLookup, Origin
from netwatch.errors import DataFileError
from netwatch.model import parse_ip
try:
    db = GeoDatabase.open(Path(sys.argv[1]), Origin[sys.argv[2]])
except DataFileError as exc:
    print(exc)
else:
    lookup = GeoLookup([db])
    lookup.lookup(parse_ip("2001:4860:4860::8888"))
    print(*lookup.problems.values())
"""


@pytest.mark.parametrize("origin", ["DISCOVERED", "EXPLICIT", "UPDATED"])
def test_a_damaged_record_type_is_a_problem_not_a_crash(
    env: dict[str, str], tmp_path: Path, origin: str
) -> None:
    """maxminddb 3.2.0's C extension dies (SIGSEGV) decoding a record whose `iso_code` key's
    control byte became 0x01 (found by bench/fuzz.py); files netwatch did not ship are read
    with the pure-Python reader, which raises."""
    from tests.mmdb import write_mmdb

    path = write_mmdb(tmp_path / "t.mmdb", {"2001:4860::/32": ("US", 15169, "Google LLC")})
    data = path.read_bytes()
    at = data.index(b"Hiso_code")
    path.write_bytes(data[:at] + b"\x01" + data[at + 1 :])
    res = subprocess.run(
        [sys.executable, "-c", PROBE, str(path), origin],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )  # fmt: skip
    assert res.returncode == 0, (res.returncode, res.stderr[-500:])
    assert res.stdout.startswith(f"{path}: "), res.stdout
