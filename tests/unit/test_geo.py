"""GeoIP reading: layouts, normalisation, per-field priority, scope, explicit files, bad files."""

from __future__ import annotations

import contextlib
import ipaddress
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from mmdb_writer import MmdbU32, MMDBWriter
from netaddr import IPSet

from netwatch.enrich.geo import GeoDatabase, GeoLookup, Origin, layout_of, normalize
from netwatch.enrich.geo_paths import bundled_path
from netwatch.enrich.scope import RULES, classify, lookup_address, scope_of
from netwatch.errors import DataFileError
from netwatch.model import Scope, parse_ip
from tests.mmdb import write_mmdb


def write_raw(path: Path, db_type: str, networks: dict[str, Any], version: int = 6) -> Path:
    """Write an mmdb with arbitrary record layouts (other vendors' shapes)."""
    writer = MMDBWriter(
        ip_version=version,
        ipv4_compatible=version == 6,
        database_type=db_type,
        languages=["en"],
        description={"en": "test"},
    )
    for cidr, record in networks.items():
        writer.insert_network(IPSet([cidr]), record)
    writer.to_db_file(str(path))
    return path


# Covers all of IPv4 (also ::/96, so :: and ::1) and the IPv6 blocks the scope tests use.
EVERYTHING = dict.fromkeys(("0.0.0.0/1", "128.0.0.0/1", "2000::/3", "8000::/1"), ("AU", 1, "Bogus"))


def ip(text: str) -> Any:
    return parse_ip(text)


@pytest.mark.parametrize(
    ("db_type", "layout"),
    [
        ("GeoLite2-City", "maxmind"),
        ("GeoIP2-Country", "maxmind"),
        ("DBIP-ASN-Lite (compat=GeoLite2-ASN)", "dbip"),
        ("country ipvAll", "ip-location-db"),
        ("asn ipv4", "ip-location-db"),
        ("netwatch-Country-ASN (compat=GeoLite2-ASN)", "netwatch"),
        ("Something-Else", "other"),
    ],
)
def test_layout_is_decided_by_database_type(db_type: str, layout: str) -> None:
    assert layout_of(db_type) == layout


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"country_code": "ru"}, ("RU", None, None)),
        ({"country": {"iso_code": "GB", "names": {"en": "United Kingdom"}}}, ("GB", None, None)),
        ({"registered_country": {"iso_code": "JP"}}, ("JP", None, None)),
        (
            {"autonomous_system_number": 1221, "autonomous_system_organization": "Telstra"},
            (None, 1221, "Telstra"),
        ),
        ({"asn": "AS13335", "as_organization": "Cloudflare"}, (None, 13335, "Cloudflare")),
        ({"traits": {"autonomous_system_number": 7, "isp": "x"}, "isp": "ISP"}, (None, 7, "ISP")),
        ({"country_code": "not a code"}, None),
        ({"autonomous_system_number": True}, None),
        ("a string", None),
        ([1, 2], None),
        (None, None),
    ],
)
def test_normalize_covers_every_layout(record: Any, expected: Any) -> None:
    answer = normalize(record)
    if expected is None:
        assert answer is None
    else:
        assert answer is not None
        assert (answer.country, answer.asn, answer.as_org) == expected


def test_bundled_file_answers_the_research_addresses() -> None:
    path = bundled_path()
    assert path is not None and path.name == "netwatch-country-asn.mmdb"
    geo = GeoLookup([GeoDatabase.open(path, Origin.BUNDLED)])
    cases = {
        "90.189.249.23": ("RU", 12389),
        "133.11.0.1": ("JP", 2501),
        "8.8.8.8": ("US", 15169),
        "1.1.1.1": ("AU", 13335),
        "2001:4860:4860::8888": ("CA", 15169),
        "::ffff:90.189.249.23": ("RU", 12389),
    }
    for text, (country, asn) in cases.items():
        info = geo.lookup(ip(text))
        assert (info.scope, info.country, info.asn) == (Scope.GLOBAL, country, asn), text
        assert info.sources[0].type == "netwatch-Country-ASN (compat=GeoLite2-ASN)"
    google = geo.lookup(ip("8.8.8.8"))
    assert google.as_org == "Google LLC"
    assert google.jurisdiction == ("5 Eyes", "9 Eyes", "14 Eyes")
    assert geo.lookup(ip("90.189.249.23")).jurisdiction == ()


def test_nat64_addresses_are_looked_up_as_their_ipv4(tmp_path: Path) -> None:
    db = write_mmdb(tmp_path / "t.mmdb", {"8.8.8.0/24": ("US", 15169, "Google LLC")})
    geo = GeoLookup([GeoDatabase.open(db, Origin.BUNDLED)])
    info = geo.lookup(ip("64:ff9b::808:808"))
    assert (info.country, info.asn) == ("US", 15169)
    assert str(info.ip) == "64:ff9b::808:808"


@pytest.mark.parametrize(
    ("text", "scope"),
    [
        ("192.168.1.5", Scope.PRIVATE),
        ("10.1.2.3", Scope.PRIVATE),
        ("fd00::1", Scope.PRIVATE),
        ("127.0.0.1", Scope.LOOPBACK),
        ("::1", Scope.LOOPBACK),
        ("169.254.1.1", Scope.LINK_LOCAL),
        ("fe80::1", Scope.LINK_LOCAL),
        ("100.64.0.1", Scope.CGNAT),
        ("224.0.0.251", Scope.MULTICAST),
        ("ff02::fb", Scope.MULTICAST),
        ("198.51.100.7", Scope.DOCUMENTATION),
        ("2001:db8::1", Scope.DOCUMENTATION),
        ("0.0.0.0", Scope.UNSPECIFIED),
        ("::", Scope.UNSPECIFIED),
        ("240.0.0.1", Scope.RESERVED),
        ("192.0.0.8", Scope.RESERVED),
        ("::ffff:192.168.1.5", Scope.PRIVATE),
    ],
)
def test_non_global_addresses_are_not_looked_up_in_discovered_data(
    tmp_path: Path, text: str, scope: Scope
) -> None:
    # A discovered file that (wrongly) maps everything, as geo-whois-asn does for 192.168/16.
    db = write_mmdb(tmp_path / "all.mmdb", EVERYTHING)
    geo = GeoLookup([GeoDatabase.open(db, Origin.DISCOVERED)])
    info = geo.lookup(ip(text))
    assert info.scope is scope
    assert (info.country, info.asn, info.sources) == (None, None, ())


def test_explicit_file_is_consulted_for_documentation_ranges(tmp_path: Path) -> None:
    """Live tests map their namespace hosts (documentation ranges) with --geoip-db."""
    mine = write_mmdb(
        tmp_path / "lab.mmdb",
        {"198.51.100.0/24": ("JP", 64500, "Lab JP"), "2001:db8:1::/48": ("DE", 64501, "Lab DE")},
    )
    everything = write_mmdb(tmp_path / "all.mmdb", EVERYTHING)
    geo = GeoLookup(
        [
            GeoDatabase.open(everything, Origin.DISCOVERED),
            GeoDatabase.open(mine, Origin.EXPLICIT),
        ]
    )
    v4 = geo.lookup(ip("198.51.100.7"))
    assert (v4.scope, v4.country, v4.asn, v4.as_org) == (
        Scope.DOCUMENTATION,
        "JP",
        64500,
        "Lab JP",
    )
    assert [s.file for s in v4.sources] == [str(mine)]
    v6 = geo.lookup(ip("2001:db8:1::5"))
    assert (v6.scope, v6.country, v6.jurisdiction) == (Scope.DOCUMENTATION, "DE", ("14 Eyes",))
    # Not in the explicit file: stays unknown, the discovered file is not asked.
    other = geo.lookup(ip("192.0.2.1"))
    assert (other.scope, other.country, other.sources) == (Scope.DOCUMENTATION, None, ())


def test_fields_merge_by_priority_field_by_field(tmp_path: Path) -> None:
    # explicit has only the country, GeoLite2 has country and ASN, bundled has everything.
    explicit = write_raw(
        tmp_path / "e.mmdb", "country ipvAll", {"8.8.8.0/24": {"country_code": "SE"}}
    )
    lite = write_raw(
        tmp_path / "GeoLite2-ASN.mmdb",
        "GeoLite2-ASN",
        {
            "8.8.8.0/24": {
                "autonomous_system_number": MmdbU32(64512),
                "autonomous_system_organization": "Lite",
            }
        },
    )
    bundled = write_mmdb(tmp_path / "b.mmdb", {"8.8.8.0/24": ("US", 15169, "Google LLC")})
    dbs = [
        GeoDatabase.open(bundled, Origin.BUNDLED),
        GeoDatabase.open(lite, Origin.GEOLITE2),
        GeoDatabase.open(explicit, Origin.EXPLICIT),
    ]
    info = GeoLookup(dbs).lookup(ip("8.8.8.8"))
    assert (info.country, info.asn, info.as_org) == ("SE", 64512, "Lite")
    assert [s.file for s in info.sources] == [str(explicit), str(lite)]
    # Where the better files have nothing, the bundled answer is used.
    write = GeoLookup(dbs).lookup(ip("8.8.4.4"))
    assert (write.country, write.asn) == (None, None)


def test_maxmind_city_and_ipv4_only_files(tmp_path: Path) -> None:
    city = write_raw(
        tmp_path / "GeoLite2-City.mmdb",
        "GeoLite2-City",
        {"81.2.69.0/24": {"city": {"names": {"en": "London"}}, "country": {"iso_code": "GB"}}},
        version=4,
    )
    geo = GeoLookup([GeoDatabase.open(city, Origin.GEOLITE2)])
    assert geo.lookup(ip("81.2.69.142")).country == "GB"
    assert geo.lookup(ip("2001:4860::1")).country is None  # IPv6 never asked of an IPv4 file


def test_lookups_are_cached_per_address(tmp_path: Path) -> None:
    db = write_mmdb(tmp_path / "t.mmdb", {"8.8.8.0/24": ("US", 15169, "Google LLC")})
    geo = GeoLookup([GeoDatabase.open(db, Origin.BUNDLED)], cache_size=4)
    first = geo.lookup(ip("8.8.8.8"))
    assert geo.lookup(ip("8.8.8.8")) is first
    assert geo.lookup.cache_info().hits == 1  # type: ignore[attr-defined]


@pytest.mark.parametrize("content", [b"", b"not an mmdb at all" * 100])
def test_garbage_file_is_a_data_file_error_naming_it(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "bad.mmdb"
    bad.write_bytes(content)
    with pytest.raises(DataFileError, match=r"bad\.mmdb"):
        GeoDatabase.open(bad, Origin.EXPLICIT)


def test_missing_file_and_directory_are_data_file_errors(tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match="no such file"):
        GeoDatabase.open(tmp_path / "nope.mmdb", Origin.EXPLICIT)
    with pytest.raises(DataFileError, match="directory"):
        GeoDatabase.open(tmp_path, Origin.EXPLICIT)


def test_truncated_files_fail_cleanly_at_every_cut(tmp_path: Path) -> None:
    good = write_mmdb(tmp_path / "good.mmdb", {"8.8.8.0/24": ("US", 15169, "Google LLC")})
    data = good.read_bytes()
    cut = tmp_path / "cut.mmdb"
    errors: list[str] = []
    for size in range(0, len(data), max(1, len(data) // 97)):
        cut.write_bytes(data[:size])
        try:
            db = GeoDatabase.open(cut, Origin.EXPLICIT)
        except DataFileError as exc:
            errors.append(str(exc))
            continue
        with contextlib.suppress(DataFileError):  # metadata survived: an answer or this error
            GeoLookup([db]).lookup(ipaddress.IPv4Address("8.8.8.8"))
        db.close()
    assert errors and all(e.startswith(str(cut)) for e in errors)


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address),
        st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address),
        st.sampled_from([n for n, _ in RULES]).flatmap(
            lambda n: st.sampled_from([n.network_address, n.broadcast_address])
        ),
    )
)
def test_scope_table_agrees_with_the_rules(addr: Any) -> None:
    assert scope_of(addr) is classify(lookup_address(addr))


def test_scope_agrees_with_python_on_common_addresses() -> None:
    for text in ("8.8.8.8", "1.1.1.1", "2a00:1450::1", "10.0.0.1", "fe80::1", "127.0.0.1"):
        addr = parse_ip(text)
        assert (scope_of(addr) is Scope.GLOBAL) == addr.is_global, text


RECORDS = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "country",
                    "country_code",
                    "iso_code",
                    "asn",
                    "autonomous_system_number",
                    "autonomous_system_organization",
                    "traits",
                    "registered_country",
                    "isp",
                    "x",
                ]
            ),
            inner,
            max_size=5,
        )
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(RECORDS)
@example({"asn": "\u00b2"})  # found by this test: "²".isdigit() is True, int("²") raises
def test_normalize_never_raises_on_odd_records(record: Any) -> None:
    answer = normalize(record)
    if answer is not None:
        assert answer.country is None or (len(answer.country) == 2 and answer.country.isupper())
        assert answer.asn is None or 0 <= answer.asn < 2**32


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=2048), st.integers(0, 4000))
def test_mangled_files_open_cleanly_or_fail_with_data_file_error(noise: bytes, at: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = write_mmdb(Path(tmp) / "base.mmdb", {"8.8.8.0/24": ("US", 15169, "Google LLC")})
        data = bytearray(base.read_bytes())
        data[at : at + len(noise)] = noise
        bad = Path(tmp) / "mangled.mmdb"
        bad.write_bytes(bytes(data))
        try:
            db = GeoDatabase.open(bad, Origin.EXPLICIT)
        except DataFileError as exc:
            message = str(exc)
        else:
            message = ""
        if message:
            assert message.startswith(str(bad))
            return
        with contextlib.suppress(DataFileError):
            GeoLookup([db]).lookup(parse_ip("8.8.8.8"))
        db.close()
