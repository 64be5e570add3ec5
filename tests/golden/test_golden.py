"""Golden tests: recorded captures through `netwatch analyze`, compared with committed output.

Each tests/golden/captures/NAME.pcap (recorded by tests/golden/record.py from the live tests'
own namespace labs) runs through `netwatch analyze NAME.pcap --format jsonl --geoip-db
golden.mmdb`, where golden.mmdb is written here with fixed data (tests/mmdb.py) mapping the
labs' documentation addresses to countries and networks. The records must equal
tests/golden/expected/NAME.json: a JSON array, keys sorted, one field a line, so a changed
expectation is a diff of the fields that changed, in review as in a failing test (which shows
the same unified diff).

`pytest tests/golden --golden-update` rewrites the expected files from what netwatch now says;
read the diff before committing it.

Nothing in a record should vary between runs (every time comes from the capture, every id is
derived from the rule, the flow and its first packet time), with one exception, normalised
explicitly in `_normalise`: the GeoIP source that names golden.mmdb carries the file's path (a
fresh temporary folder per run) and its build time (mmdb_writer stamps the time of writing).
"""

from __future__ import annotations

import difflib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.live.capture_lab import analyze
from tests.mmdb import write_mmdb

HERE = Path(__file__).resolve().parent
CAPTURES = HERE / "captures"
EXPECTED = HERE / "expected"
NAMES = sorted(p.stem for p in CAPTURES.glob("*.pcap"))

# The labs' servers (tests/golden/record.py), each in a country and network of its own.
NETWORKS = {
    "203.0.113.80/31": ("JP", 64500, "VPN Gate Test"),
    "198.51.100.10/32": ("US", 64520, "Test VPN Inc"),
    "198.51.100.11/32": ("SE", 64530, "Tunnel Test AB"),
    "198.51.100.13/32": ("DE", 64540, "IPsec Test GmbH"),
}

# What each capture is about: a flow with this app label must be in its expected file, so a
# regenerated expectation that lost the point of the capture cannot pass review unseen.
APPS = {
    "dns_https": {"dns", "tls"},
    "vpngate_http": {"vpngate"},
    "openvpn_udp": {"openvpn"},
    "wireguard": {"wireguard"},
    "ikev2": {"ipsec"},
}

MMDB_FILE = "<golden.mmdb>"
MMDB_BUILT = "<time golden.mmdb was written>"


@pytest.fixture(scope="module")
def golden_mmdb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_mmdb(tmp_path_factory.mktemp("golden") / "golden.mmdb", NETWORKS)


def _normalise(value: Any, mmdb: Path) -> Any:
    """`value` with golden.mmdb's path and build time (both differ per run) replaced."""
    if isinstance(value, dict):
        if value.get("file") == str(mmdb) and "built" in value:
            return {**value, "file": MMDB_FILE, "built": MMDB_BUILT}
        return {k: _normalise(v, mmdb) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalise(v, mmdb) for v in value]
    return value


def _pretty(records: list[dict]) -> str:
    """The records with one field a line, so a diff points at the field that changed."""
    return json.dumps(records, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def test_every_capture_has_an_expected_file_and_is_small(request: pytest.FixtureRequest) -> None:
    assert NAMES, "no golden captures"
    if not request.config.getoption("--golden-update"):  # a new capture's file is on its way
        assert sorted(p.stem for p in EXPECTED.glob("*.json")) == NAMES
    assert set(APPS) == set(NAMES)
    for name in NAMES:
        assert (CAPTURES / f"{name}.pcap").stat().st_size < 100_000, name


@pytest.mark.parametrize("name", NAMES)
def test_analyze_matches_expected(
    name: str, golden_mmdb: Path, request: pytest.FixtureRequest
) -> None:
    got = _normalise(
        analyze(CAPTURES / f"{name}.pcap", "--geoip-db", str(golden_mmdb)), golden_mmdb
    )
    path = EXPECTED / f"{name}.json"
    if request.config.getoption("--golden-update"):
        EXPECTED.mkdir(exist_ok=True)
        path.write_text(_pretty(got))
    want = json.loads(path.read_text())
    assert path.read_text() == _pretty(want), f"{path} is not written as _pretty writes it"
    if got != want:
        diff = difflib.unified_diff(
            _pretty(want).splitlines(keepends=True),
            _pretty(got).splitlines(keepends=True),
            f"expected/{name}.json",
            f"analyze {name}.pcap",
        )
        pytest.fail(f"analyze {name}.pcap differs from expected/{name}.json:\n{''.join(diff)}")
    apps = {r["app"] for r in want if r["type"] == "flow"}
    assert APPS[name] <= apps, f"{name}: expected flows labelled {APPS[name]}, got {apps}"


def test_corpus_score_finds_every_labelled_flow_right() -> None:
    """`bench/corpus_score.py` on these captures, labelled by what record.py ran to make them
    (captures/labels.jsonl): every VPN flow called VPN, no other flow, none missing."""
    root = HERE.parent.parent
    res = subprocess.run(
        [sys.executable, str(root / "bench" / "corpus_score.py"), str(CAPTURES)],
        capture_output=True, text=True, timeout=120, cwd=root, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    assert "| 12 | 12 | 0 | 0 | 0 |" in res.stdout
    assert "| 4 | 100.0% | 100.0% (5/5) | 7 | 0 | 0.0% |" in res.stdout
