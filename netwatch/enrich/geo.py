"""GeoIP/ASN readers: open MaxMind DB files, normalise every layout, merge them per field.

Reads with `maxminddb` directly, not `geoip2`: geoip2 rejects files whose `database_type` lacks the
method's name and silently returns None on layouts it does not know (geoip2 5.3's `database.py`
checks the type by substring: https://github.com/maxmind/GeoIP2-python). Only the file netwatch
ships is read with the C extension: a damaged data section can crash it (maxminddb 3.2.0: SIGSEGV
decoding a record whose type byte was changed, found by `bench/fuzz.py`), and a crash is one no
`except` can turn into a skipped file. Every other file goes through the pure-Python reader, which
raises instead (about 17 us a lookup instead of 2.5 us; answers are cached per address).

One normaliser covers MaxMind GeoIP2/GeoLite2 Country/City/ASN/ISP, DB-IP, ip-location-db
(`country_code`) and netwatch's own file. Answers are merged field by field in `Origin` order
(explicit > GeoIP2 > GeoLite2 > other discovered > updated > bundled) and cached per address
(LRU).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

import maxminddb

from netwatch.enrich.jurisdiction import Jurisdictions, bundled
from netwatch.enrich.scope import lookup_address, scope_of
from netwatch.errors import DataFileError
from netwatch.model import DataSource, IPAddress, RemoteInfo, Scope

DEFAULT_CACHE_SIZE = 65536


class Origin(IntEnum):
    """Where a database came from; lower values win when two files answer the same field."""

    EXPLICIT = 0
    """Given by the user (`--geoip-db`, `NETWATCH_GEOIP_DIR`); asked even for local ranges."""
    GEOIP2 = 1
    """A commercial MaxMind GeoIP2 file found in a geoipupdate directory."""
    GEOLITE2 = 2
    """A GeoLite2 file found in a geoipupdate directory."""
    DISCOVERED = 3
    """Another file found in a geoipupdate directory (e.g. DB-IP)."""
    UPDATED = 4
    """Fetched by `netwatch geoip update` into the data directory."""
    BUNDLED = 5
    """The file shipped with netwatch."""


@dataclass(frozen=True, slots=True)
class GeoAnswer:
    """What one file says about one address, already normalised."""

    country: str | None = None
    asn: int | None = None
    as_org: str | None = None


def layout_of(database_type: str) -> str:
    """Classify a file by its `database_type`: maxmind, dbip, ip-location-db, netwatch, other."""
    kind = database_type.strip().lower()
    if kind.startswith(("geoip2-", "geolite2-")):
        return "maxmind"
    if kind.startswith("dbip-"):
        return "dbip"
    if kind.startswith("netwatch-"):
        return "netwatch"
    head, _, tail = kind.partition(" ")
    if head in ("country", "asn", "city") and tail in ("ipv4", "ipv6", "ipvall"):
        return "ip-location-db"
    return "other"


def _iso(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("iso_code")
    if isinstance(value, str) and len(value) == 2 and value.isascii() and value.isalpha():
        return value.upper()
    return None


def _int(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**32:
        return value
    if isinstance(value, str) and value.upper().removeprefix("AS").isdecimal():
        return _int(int(value.upper().removeprefix("AS")))
    return None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def normalize(record: Any) -> GeoAnswer | None:
    """Turn a record of any known layout into a GeoAnswer (None when it holds nothing useful).

    Country: `country_code`, then `country.iso_code`, then `registered_country.iso_code`.
    ASN: `autonomous_system_number` (top level or under `traits`), or ip-location-db's `asn`;
    organisation likewise, falling back to `organization`/`isp` in ISP databases.
    """
    if not isinstance(record, dict):  # maxminddb decodes maps to dicts (cheaper than Mapping)
        return None
    traits = record.get("traits")
    traits = traits if isinstance(traits, dict) else {}
    country = (
        _iso(record.get("country_code"))
        or _iso(record.get("country"))
        or _iso(record.get("registered_country"))
    )
    asn = _int(record.get("autonomous_system_number"))
    if asn is None:
        asn = _int(record.get("asn"))
    if asn is None:
        asn = _int(traits.get("autonomous_system_number"))
    org = (
        _text(record.get("autonomous_system_organization"))
        or _text(record.get("as_organization"))
        or _text(traits.get("autonomous_system_organization"))
        or _text(record.get("organization"))
        or _text(traits.get("organization"))
        or _text(record.get("isp"))
    )
    if country is None and asn is None and org is None:
        return None
    return GeoAnswer(country, asn, org)


_DAMAGE = (
    maxminddb.InvalidDatabaseError,
    ValueError,
    RuntimeError,  # RecursionError: pointers in a loop
    # The pure-Python reader meets damage as whatever its decoding trips over (a metadata
    # key that is not an argument, an index or a size past the end): found by bench/fuzz.py.
    TypeError,
    LookupError,
    OverflowError,
)
"""What reading a damaged MaxMind DB file raises."""


def _why(exc: Exception, path: Path) -> str:
    """The library's reason without the path it repeats (the message already starts with it),
    on one line (a damaged file's text, which the reason may quote, can hold line breaks)."""
    text = str(exc).replace(f" ({path})", "").replace(str(path), "the file")
    return " ".join(text.split()) or type(exc).__name__


class GeoDatabase:
    """One open MaxMind DB file with what `geoip status` shows about it."""

    def __init__(self, path: Path, origin: Origin, reader: maxminddb.Reader) -> None:
        meta = reader.metadata()
        self.path = path
        self.origin = origin
        self.reader = reader
        self.database_type = str(meta.database_type)
        self.layout = layout_of(self.database_type)
        self.build_epoch = float(meta.build_epoch)
        self.ip_version = int(meta.ip_version)
        self.description = dict(meta.description)
        self.source = DataSource(str(path), self.database_type, self.build_epoch)

    @classmethod
    def open(cls, path: Path, origin: Origin) -> GeoDatabase:
        """Open and sanity-check a file; any problem is a DataFileError naming the file.

        The bundled file is read with the C extension, any other with the pure-Python reader
        (see the module docstring: damaged data must raise, not crash the process).
        """
        if path.is_dir():
            raise DataFileError(f"{path}: is a directory, not a MaxMind DB file")
        mode = maxminddb.MODE_AUTO if origin is Origin.BUNDLED else maxminddb.MODE_MMAP
        try:
            reader = maxminddb.open_database(str(path), mode)
        except FileNotFoundError:
            raise DataFileError(f"{path}: no such file") from None
        except OSError as exc:
            raise DataFileError(f"{path}: cannot read ({exc.strerror or exc})") from None
        except _DAMAGE as exc:
            raise DataFileError(
                f"{path}: not a valid MaxMind DB file ({_why(exc, path)})"
            ) from None
        try:
            db = cls(path, origin, reader)
            if db.ip_version not in (4, 6):
                raise ValueError(f"unsupported ip_version {db.ip_version}")
            probe = "8.8.8.8" if db.ip_version == 4 else "2001:4860:4860::8888"
            reader.get(probe)
        except _DAMAGE as exc:
            reader.close()
            raise DataFileError(
                f"{path}: not a valid MaxMind DB file ({_why(exc, path)})"
            ) from None
        return db

    def get(self, ip: IPAddress) -> GeoAnswer | None:
        """Look one address up; a data section that fails to decode is a DataFileError."""
        if ip.version == 6 and self.ip_version == 4:
            return None
        try:
            return normalize(self.reader.get(ip))
        except _DAMAGE as exc:
            raise DataFileError(f"{self.path}: corrupt record for {ip} ({exc})") from None

    def close(self) -> None:
        """Release the memory map."""
        self.reader.close()


class GeoLookup:
    """All open databases in priority order; `lookup(ip)` gives a cached `RemoteInfo`."""

    def __init__(
        self,
        databases: Iterable[GeoDatabase] = (),
        *,
        jurisdictions: Jurisdictions | None = None,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        self.databases: tuple[GeoDatabase, ...] = tuple(sorted(databases, key=lambda db: db.origin))
        self._explicit = tuple(db for db in self.databases if db.origin is Origin.EXPLICIT)
        self._broken: dict[str, str] = {}
        self.jurisdictions = jurisdictions or bundled()
        self.lookup = functools.lru_cache(maxsize=cache_size)(self._lookup)

    @property
    def problems(self) -> Mapping[str, str]:
        """Files that failed while answering (path -> reason); they are no longer asked."""
        return dict(self._broken)

    def _lookup(self, ip: IPAddress) -> RemoteInfo:
        """Scope first; then every applicable database, first answer per field wins."""
        scope = scope_of(ip)
        target = lookup_address(ip)
        candidates: Sequence[GeoDatabase] = (
            self.databases if scope is Scope.GLOBAL else self._explicit
        )
        country: str | None = None
        asn: int | None = None
        org: str | None = None
        sources: list[DataSource] = []
        for db in candidates:
            if db.source.file in self._broken:
                continue
            try:
                answer = db.get(target)
            except DataFileError as exc:
                # Even a file the user named: a long-running daemon must not stop for it.
                # Commands report `problems` as one line each and exit 1 (cli.lookup).
                self._broken[db.source.file] = str(exc)
                continue
            if answer is None:
                continue
            used = False
            if country is None and answer.country is not None:
                country, used = answer.country, True
            if asn is None and answer.asn is not None:
                asn, used = answer.asn, True
                if org is None and answer.as_org is not None:
                    org = answer.as_org
            if used:
                sources.append(db.source)
            if country is not None and asn is not None:
                break
        return RemoteInfo(
            ip=ip,
            scope=scope,
            country=country,
            asn=asn,
            as_org=org,
            jurisdiction=self.jurisdictions.of(country),
            sources=tuple(sources),
        )

    def close(self) -> None:
        """Close every database."""
        for db in self.databases:
            db.close()
