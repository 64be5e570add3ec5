"""`lookup` with a City database of the user's says where in the country (geoip2's City model)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from netwatch.enrich.city import CityFinder
from netwatch.model import parse_ip
from tests.mmdb import write_city_mmdb, write_mmdb

PLACES = {"203.0.113.0/24": ("JP", "Osaka", "Osaka Prefecture", 34.69, 135.5, 20)}


def _lookup(cmd: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*cmd, "lookup", *args], capture_output=True, text=True, timeout=60,
                          check=False)  # fmt: skip


def test_lookup_names_the_place_from_a_city_file(netwatch_cmd: list[str], tmp_path: Path) -> None:
    city = write_city_mmdb(tmp_path / "GeoIP2-City.mmdb", PLACES)
    res = _lookup(netwatch_cmd, "203.0.113.7", "198.51.100.1", "--format", "jsonl",
                  "--geoip-db", str(city))  # fmt: skip
    assert res.returncode == 0, res.stderr
    known, unknown = (json.loads(line) for line in res.stdout.splitlines())
    assert known["country"] == "JP"
    assert known["place"] == {
        "city": "Osaka",
        "region": "Osaka Prefecture",
        "latitude": 34.69,
        "longitude": 135.5,
        "accuracy_km": 20,
        "file": str(city),
    }
    assert unknown["place"] is None
    table = _lookup(netwatch_cmd, "203.0.113.7", "--geoip-db", str(city))
    header, row = table.stdout.splitlines()
    assert header.split()[:4] == ["IP", "SCOPE", "CC", "PLACE"]
    assert "Osaka, Osaka Prefecture (±20 km)" in row


def test_without_a_city_file_there_is_no_place_column(
    netwatch_cmd: list[str], tmp_path: Path
) -> None:
    country = write_mmdb(tmp_path / "c.mmdb", {"203.0.113.0/24": ("JP", None, None)})
    res = _lookup(netwatch_cmd, "203.0.113.7", "--geoip-db", str(country))
    assert res.returncode == 0, res.stderr
    assert "PLACE" not in res.stdout.splitlines()[0]


def test_files_that_are_not_city_databases_are_skipped(tmp_path: Path) -> None:
    country = write_mmdb(tmp_path / "c.mmdb", {"203.0.113.0/24": ("JP", None, None)})
    junk = tmp_path / "junk.mmdb"
    junk.write_bytes(b"\xab\xcd\xefMaxMind.com" + b"\x00" * 64)
    city = write_city_mmdb(tmp_path / "city.mmdb", PLACES, "DBIP-City-Lite")
    finder = CityFinder.open([country, junk, tmp_path / "missing.mmdb", city])
    try:
        assert len(finder) == 1
        place = finder.place(parse_ip("203.0.113.9"))
        assert place is not None and place.city == "Osaka" and place.file == str(city)
        assert finder.place(parse_ip("2001:db8::1")) is None
    finally:
        finder.close()
