"""Write small MaxMind DB files for tests (the layout of netwatch's bundled file).

Tests map their namespace hosts (documentation ranges) to countries with these, and pass the
file with `--geoip-db`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from mmdb_writer import MmdbF64, MmdbU16, MmdbU32, MMDBWriter
from netaddr import IPSet


def _writer(database_type: str) -> MMDBWriter:
    """An IPv6 tree with the IPv4 space mapped in, as MaxMind's own files are."""
    return MMDBWriter(
        ip_version=6,
        ipv4_compatible=True,
        database_type=database_type,
        languages=["en"],
        description={"en": "netwatch test data"},
    )


def write_mmdb(
    path: Path,
    networks: Mapping[str, tuple[str | None, int | None, str | None]],
    database_type: str = "netwatch-Country-ASN (compat=GeoLite2-ASN)",
) -> Path:
    """Write `{cidr: (country, asn, as_org)}` as a GeoIP2-field-named mmdb at `path`."""
    writer = _writer(database_type)
    for cidr, (country, asn, org) in networks.items():
        record: dict[str, object] = {}
        if country:
            record["country"] = {"iso_code": country}
        if asn is not None:
            record["autonomous_system_number"] = MmdbU32(asn)
            record["autonomous_system_organization"] = org or ""
        writer.insert_network(IPSet([cidr]), record)
    writer.to_db_file(str(path))
    return path


def write_city_mmdb(
    path: Path,
    places: Mapping[str, tuple[str, str, str, float, float, int]],
    database_type: str = "GeoIP2-City",
) -> Path:
    """Write `{cidr: (country, city, region, latitude, longitude, radius_km)}` as a City file."""
    writer = _writer(database_type)
    for cidr, (country, city, region, lat, lon, radius) in places.items():
        record = {
            "country": {"iso_code": country, "names": {"en": country}},
            "city": {"names": {"en": city}},
            "subdivisions": [{"names": {"en": region}}],
            "location": {
                "latitude": MmdbF64(lat),
                "longitude": MmdbF64(lon),
                "accuracy_radius": MmdbU16(radius),
            },
        }
        writer.insert_network(IPSet([cidr]), record)
    writer.to_db_file(str(path))
    return path
