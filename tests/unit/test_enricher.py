"""The enrichment stage: flows get RemoteInfo; discovery order; list matchers; bad files."""

from __future__ import annotations

from pathlib import Path

import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from netwatch import paths
from netwatch.enrich.enricher import Enricher, build_enricher, open_databases
from netwatch.enrich.geo import Origin
from netwatch.enrich.geo_paths import conf_database_dir, discover, search_dirs
from netwatch.errors import DataFileError
from netwatch.model import IPAddress, ListHit, Scope, parse_ip
from tests.builders import make_flow
from tests.mmdb import write_mmdb


class TorList:
    """A stand-in list (the real matchers live in enrich.lists): one address, any port."""

    def __init__(self, member: str) -> None:
        self.member = parse_ip(member)
        self.calls: list[tuple[IPAddress, int | None]] = []

    def match(self, ip: IPAddress, port: int | None) -> tuple[ListHit, ...]:
        self.calls.append((ip, port))
        return (ListHit("tor", "relay"),) if ip == self.member else ()


def lab_db(tmp_path: Path, name: str = "lab.mmdb") -> Path:
    return write_mmdb(
        tmp_path / name,
        {"203.0.113.0/24": ("NL", 64502, "Lab NL"), "8.8.8.0/24": ("SE", 64503, "Lab SE")},
    )


def test_enrich_fills_remote_and_leaves_listening_sockets_alone(tmp_path: Path) -> None:
    enricher = build_enricher([lab_db(tmp_path)])
    flow = make_flow(remote_ip="203.0.113.9", remote_port=1194, with_remote=False).flow
    enriched = enricher.enrich(flow)
    assert enriched.flow is flow
    remote = enriched.remote
    assert remote is not None
    assert (remote.scope, remote.country, remote.asn) == (Scope.DOCUMENTATION, "NL", 64502)
    assert remote.jurisdiction == ("9 Eyes", "14 Eyes")
    listening = make_flow(remote_ip=None).flow
    assert enricher.enrich(listening).remote is None


def test_explicit_file_wins_over_bundled_for_global_addresses(tmp_path: Path) -> None:
    enricher = build_enricher([lab_db(tmp_path)])
    info = enricher.remote_info("8.8.8.8")
    assert (info.country, info.asn, info.as_org) == ("SE", 64503, "Lab SE")
    # An address the explicit file lacks falls through to the bundled data.
    google = enricher.remote_info("2001:4860:4860::8888")
    assert google.asn == 15169
    assert google.sources[0].file.endswith("netwatch-country-asn.mmdb")


def test_list_matchers_are_asked_with_the_port(tmp_path: Path) -> None:
    tor = TorList("90.189.249.23")
    enricher = Enricher(build_enricher([lab_db(tmp_path)]).geo, lists=[tor])
    hit = enricher.enrich(make_flow(remote_ip="90.189.249.23", remote_port=9001).flow).remote
    assert hit is not None and hit.lists == (ListHit("tor", "relay"),)
    assert hit.country == "RU"
    miss = enricher.remote_info("8.8.8.8", 443)
    assert miss.lists == ()
    assert tor.calls == [(parse_ip("90.189.249.23"), 9001), (parse_ip("8.8.8.8"), 443)]


@pytest.mark.parametrize("content", [b"", b"\x00" * 4096, b"garbage" * 99])
def test_corrupt_explicit_file_is_one_error_naming_it(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "corrupt.mmdb"
    bad.write_bytes(content)
    with pytest.raises(DataFileError) as err:
        build_enricher([bad])
    assert str(bad) in str(err.value)
    assert "\n" not in str(err.value)


def test_truncated_bundled_copy_given_explicitly_is_an_error(tmp_path: Path) -> None:
    good = lab_db(tmp_path)
    cut = tmp_path / "cut.mmdb"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(DataFileError, match=r"cut\.mmdb"):
        build_enricher([cut])


def test_discovery_order_and_origins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_dir = tmp_path / "env"
    env_dir.mkdir()
    lab_db(env_dir, "mine.mmdb")
    upd = paths.data_dir() / "geoip"
    upd.mkdir(parents=True)
    write_mmdb(
        upd / "dbip-country-lite.mmdb", {"8.8.8.0/24": ("US", None, None)}, "DBIP-Country-Lite"
    )
    gdir = tmp_path / "geoipupdate"
    gdir.mkdir()
    write_mmdb(gdir / "GeoLite2-ASN.mmdb", {"8.8.8.0/24": (None, 15169, "GOOGLE")}, "GeoLite2-ASN")
    write_mmdb(gdir / "GeoIP2-Country.mmdb", {"8.8.8.0/24": ("CA", None, None)}, "GeoIP2-Country")
    (gdir / "unrelated.mmdb").write_bytes(b"not wanted")  # not a known name: not opened
    (gdir / "GeoLite2-City.mmdb").write_bytes(b"broken")  # known name, corrupt: a problem
    monkeypatch.setenv("NETWATCH_GEOIP_DIR", str(env_dir))
    monkeypatch.setenv("GEOIPUPDATE_DB_DIR", str(gdir))
    candidates = list(discover([]))
    hows = [(c.path.name, c.how) for c in candidates]
    assert hows[:2] == [("mine.mmdb", "explicit"), ("dbip-country-lite.mmdb", "updated")]
    assert ("unrelated.mmdb", "discovered") not in hows
    assert hows[-1] == ("netwatch-country-asn.mmdb", "bundled")
    dbs, problems = open_databases(candidates)
    assert list(problems) == [str(gdir / "GeoLite2-City.mmdb")]
    origins = {db.path.name: db.origin for db in dbs}
    assert origins["GeoIP2-Country.mmdb"] is Origin.GEOIP2
    assert origins["GeoLite2-ASN.mmdb"] is Origin.GEOLITE2
    enricher = build_enricher()
    assert [db.origin for db in enricher.geo.databases] == sorted(origins.values())
    info = enricher.remote_info("8.8.8.8")
    # country: explicit SE beats GeoIP2 CA beats updated US; ASN: explicit 64503.
    assert (info.country, info.asn) == ("SE", 64503)
    assert enricher.problems == problems
    described = enricher.describe()
    assert described.startswith("mine.mmdb (explicit, ")
    assert described.endswith("netwatch-country-asn.mmdb (bundled, 2026-06-17)")


def test_geoip_conf_database_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = tmp_path / "GeoIP.conf"
    conf.write_text("# comment\nAccountID 0\nDatabaseDirectory /srv/geo\n", encoding="utf-8")
    assert conf_database_dir([str(tmp_path / "missing.conf"), str(conf)]) == Path("/srv/geo")
    monkeypatch.setenv("GEOIPUPDATE_CONF_FILE", str(conf))
    dirs = search_dirs()
    assert dirs[0] == Path("/srv/geo")
    assert Path("/usr/share/GeoIP") in dirs and Path("/var/lib/GeoIP") in dirs


def test_ipv4_only_maxmind_layout_via_discovery(tmp_path: Path) -> None:
    writer = MMDBWriter(
        ip_version=4, database_type="GeoLite2-Country", languages=["en"], description={"en": "t"}
    )
    writer.insert_network(IPSet(["81.2.69.0/24"]), {"country": {"iso_code": "GB"}})
    path = tmp_path / "GeoLite2-Country.mmdb"
    writer.to_db_file(str(path))
    dbs, problems = open_databases(
        list(discover([], env={}, dirs=[tmp_path], data_dir=tmp_path / "x", include_bundled=False))
    )
    assert problems == {} and [db.origin for db in dbs] == [Origin.GEOLITE2]
    assert Enricher(dbs).remote_info("81.2.69.142").country == "GB"
