"""City, region and location from a City database the user has, through geoip2's typed models.

The per-flow path reads every file with `maxminddb` (geo.py says why: one normaliser for
every layout, no refusals mid-stream). Where a user has a City database (MaxMind GeoIP2 or
GeoLite2 City, DB-IP City), `netwatch lookup` also says where in the country an address is,
and there geoip2's `City` model is the right reader: it names the fields (city and
subdivision names by locale, location with its accuracy radius) and refuses a file that is
not a City database instead of guessing at its layout. The bundled file has no cities, so
without a City file of the user's this adds nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import geoip2.database
import geoip2.errors
import maxminddb

from netwatch.model import IPAddress

LOCALES = ("en",)


@dataclass(frozen=True, slots=True)
class Place:
    """Where in its country an address is, by one City file."""

    city: str | None
    region: str | None
    latitude: float | None
    longitude: float | None
    accuracy_km: int | None
    """The radius around the point the address is likely within (the file's own figure)."""
    file: str


class CityFinder:
    """Asks each open City file in turn (the caller's order: explicit files first)."""

    def __init__(self, readers: list[tuple[Path, geoip2.database.Reader]]) -> None:
        self._readers = readers

    @classmethod
    def open(cls, paths: Iterable[Path]) -> CityFinder:
        """Open the files that are City databases; others and unreadable ones are skipped.

        Their country and ASN answers are the enricher's business; a damaged file has already
        been reported there.
        """
        readers = []
        for path in paths:
            try:
                reader = geoip2.database.Reader(str(path), locales=list(LOCALES))
            except (OSError, ValueError, maxminddb.InvalidDatabaseError):
                continue
            if "City" in reader.metadata().database_type:
                readers.append((path, reader))
            else:
                reader.close()
        return cls(readers)

    def __len__(self) -> int:
        return len(self._readers)

    def place(self, ip: IPAddress) -> Place | None:
        """The first file's answer for `ip`, or None when no City file knows it."""
        for path, reader in self._readers:
            try:
                found = reader.city(ip)
            except geoip2.errors.AddressNotFoundError:
                continue
            except (ValueError, TypeError, maxminddb.InvalidDatabaseError):
                continue  # a record of the wrong shape in a damaged file: ask the next one
            region = found.subdivisions.most_specific.name
            if found.city.name is None and region is None and found.location.latitude is None:
                continue
            return Place(
                city=found.city.name,
                region=region,
                latitude=found.location.latitude,
                longitude=found.location.longitude,
                accuracy_km=found.location.accuracy_radius,
                file=str(path),
            )
        return None

    def close(self) -> None:
        """Close every file."""
        for _, reader in self._readers:
            reader.close()
