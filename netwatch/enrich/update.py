"""`netwatch geoip update`: fetch DB-IP Lite monthly files (opt-in; the only GeoIP download).

For each wanted file: try this UTC month's `dbip-<kind>-lite-YYYY-MM.mmdb.gz`, fall back to
the previous month on 404, gunzip while downloading into a temp file next to the target,
verify `database_type`, build date and two sanity answers, then atomically replace the old
file, keeping it as `<name>.prev`. Nothing is replaced unless the new file passed every check.
The base URL can be overridden (`NETWATCH_GEOIP_URL` or `--url`) so tests serve files from
127.0.0.1. Proxies in the environment are honoured (urllib's default).
"""

from __future__ import annotations

import gzip
import os
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, cast

from netwatch import files
from netwatch.enrich.geo import GeoDatabase, Origin
from netwatch.errors import DataFileError, NetwatchError
from netwatch.model import parse_ip

DEFAULT_URL = "https://download.db-ip.com/free"
ENV_URL = "NETWATCH_GEOIP_URL"
MAX_AGE_DAYS = 120
CHUNK = 1 << 16


@dataclass(frozen=True, slots=True)
class Kind:
    """One DB-IP Lite product: file prefix, expected type, and two answers it must give."""

    prefix: str
    type_prefix: str
    country: str | None
    asn: int | None


KINDS = {
    "country": Kind("dbip-country-lite", "DBIP-Country-Lite", "US", None),
    "asn": Kind("dbip-asn-lite", "DBIP-ASN-Lite", None, 15169),
    "city": Kind("dbip-city-lite", "DBIP-City-Lite", "US", None),
}
SANITY_IPS = ("8.8.8.8", "2001:4860:4860::8888")
"""Google's resolvers: US / AS15169 in every DB-IP release (country is checked for the v4 one)."""

Progress = Callable[[str, int, int | None], None]
"""Called with (file name, bytes so far, total bytes or None) while downloading."""


@dataclass(frozen=True, slots=True)
class Updated:
    """What one update step installed."""

    path: Path
    url: str
    database_type: str
    built: float
    previous: Path | None


def months(now: datetime) -> tuple[str, str]:
    """Return this month and the previous one as `YYYY-MM` (UTC)."""
    year, month = now.year, now.month
    prev = (year, month - 1) if month > 1 else (year - 1, 12)
    return f"{year:04d}-{month:02d}", f"{prev[0]:04d}-{prev[1]:02d}"


def base_url(override: str | None = None) -> str:
    """Return the download base: the option, then `NETWATCH_GEOIP_URL`, then DB-IP."""
    return (override or os.environ.get(ENV_URL) or DEFAULT_URL).rstrip("/")


def _download(url: str, dest: Path, progress: Progress | None, timeout: float) -> None:
    """GET a .gz and gunzip it into `dest` while reading; 404 raises FileNotFoundError."""
    name = url.rsplit("/", 1)[-1]
    try:
        response = urllib.request.urlopen(url, timeout=timeout)  # noqa: S310  # http(s) base
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise FileNotFoundError(url) from None
        raise NetwatchError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise NetwatchError(f"{url}: download failed ({reason})") from None
    total_header = response.headers.get("Content-Length")
    total = int(total_header) if total_header and total_header.isdecimal() else None
    counted = _Counting(response, lambda n: progress(name, n, total) if progress else None)
    try:
        with (
            response,
            gzip.GzipFile(fileobj=cast(BinaryIO, counted), mode="rb") as gz,
            files.open_private(dest, "wb") as out,
        ):
            while chunk := gz.read(CHUNK):
                out.write(chunk)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataFileError(f"{url}: not a valid gzip download ({exc})") from None


class _Counting:
    """A read-only stream wrapper that reports how many bytes went through."""

    def __init__(self, raw: BinaryIO, report: Callable[[int], object]) -> None:
        self.raw = raw
        self.report = report
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.count += len(data)
        self.report(self.count)
        return data


def verify(path: Path, kind: Kind, now: datetime, url: str) -> GeoDatabase:
    """Open the new file and check type, build date and the sanity answers."""
    try:
        db = GeoDatabase.open(path, Origin.UPDATED)
    except DataFileError as exc:
        raise DataFileError(f"{url}: {exc.message.split(': ', 1)[-1]}") from None
    try:
        if not db.database_type.startswith(kind.type_prefix):
            raise DataFileError(f"{url}: is a {db.database_type!r} file, not {kind.type_prefix}")
        age_days = (now.timestamp() - db.build_epoch) / 86400
        if age_days > MAX_AGE_DAYS or age_days < -2:
            raise DataFileError(f"{url}: implausible build date (epoch {db.build_epoch:.0f})")
        for text in SANITY_IPS:
            answer = db.get(parse_ip(text))
            if answer is None:
                raise DataFileError(f"{url}: no answer for {text}")
            if kind.asn is not None and answer.asn != kind.asn:
                raise DataFileError(f"{url}: says AS{answer.asn} for {text}, not AS{kind.asn}")
            v4_check = kind.country is not None and text == SANITY_IPS[0]
            if v4_check and answer.country != kind.country:
                raise DataFileError(f"{url}: says {answer.country} for {text}, not {kind.country}")
    except DataFileError:
        db.close()
        raise
    return db


def update_one(
    kind: Kind,
    dest_dir: Path,
    *,
    base: str,
    now: datetime,
    progress: Progress | None = None,
    timeout: float = 30.0,
) -> Updated:
    """Fetch, verify and install one product; the old copy is kept as `.prev`."""
    files.make_dirs(dest_dir)
    target = dest_dir / f"{kind.prefix}.mmdb"
    tmp = dest_dir / f".{kind.prefix}.mmdb.part"
    tried = []
    try:
        for month in months(now):
            url = f"{base}/{kind.prefix}-{month}.mmdb.gz"
            tried.append(month)
            try:
                _download(url, tmp, progress, timeout)
            except FileNotFoundError:
                continue
            db = verify(tmp, kind, now, url)
            db.close()
            previous = None
            if target.exists():
                previous = target.with_name(target.name + ".prev")
                os.replace(target, previous)
            os.replace(tmp, target)
            return Updated(target, url, db.database_type, db.build_epoch, previous)
        raise NetwatchError(
            f"{base}/{kind.prefix}-*.mmdb.gz: not published for {' or '.join(tried)} (HTTP 404)"
        )
    finally:
        tmp.unlink(missing_ok=True)
