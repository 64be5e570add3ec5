"""Where GeoIP files are found: explicit paths, netwatch's data dir, geoipupdate dirs, bundled.

The order (docs/architecture.md, "GeoIP files"): `--geoip-db` and `NETWATCH_GEOIP_DIR` (explicit),
the files `netwatch geoip update` wrote, `$GEOIPUPDATE_DB_DIR`, the `DatabaseDirectory` of the first
readable `GeoIP.conf`, then the default geoipupdate directories (geoipupdate's own defaults,
https://github.com/maxmind/geoipupdate); the first hit per file name wins. The origin of a
discovered file (GeoIP2, GeoLite2, other) is decided by its `database_type` when it is opened, not
by its name.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from netwatch import paths

BUNDLED_NAME = "netwatch-country-asn.mmdb"
UPDATE_SUBDIR = "geoip"
ENV_DIR = "NETWATCH_GEOIP_DIR"
MAXMIND_NAMES = (
    "GeoIP2-City.mmdb",
    "GeoIP2-Country.mmdb",
    "GeoIP2-ISP.mmdb",
    "GeoIP2-Enterprise.mmdb",
    "GeoLite2-City.mmdb",
    "GeoLite2-Country.mmdb",
    "GeoLite2-ASN.mmdb",
)
CONF_FILES = (
    "/etc/GeoIP.conf",
    "/usr/local/etc/GeoIP.conf",
    "/opt/homebrew/etc/GeoIP.conf",
)
DEFAULT_DIRS = (
    "/usr/local/share/GeoIP",
    "/usr/share/GeoIP",
    "/var/lib/GeoIP",
    "/opt/homebrew/var/GeoIP",
    "/usr/local/var/GeoIP",
)


@dataclass(frozen=True, slots=True)
class Candidate:
    """A file to open, and how it was found (`explicit`, `discovered`, `updated`, `bundled`)."""

    path: Path
    how: str


def bundled_path() -> Path | None:
    """Return the shipped mmdb: inside the installed package, else in the source checkout."""
    installed = resources.files("netwatch").joinpath("_geoip", BUNDLED_NAME)
    if isinstance(installed, Path) and installed.is_file():
        return installed
    checkout = Path(__file__).resolve().parents[2] / "geoip" / BUNDLED_NAME
    return checkout if checkout.is_file() else None


def update_dir() -> Path:
    """Return where `netwatch geoip update` keeps its files."""
    return paths.data_dir() / UPDATE_SUBDIR


def _windows_dirs(env: Mapping[str, str]) -> tuple[list[str], list[str]]:
    drive = env.get("SystemDrive", "C:")
    base = f"{drive}\\ProgramData\\MaxMind\\GeoIPUpdate"
    return [f"{base}\\GeoIP.conf"], [f"{base}\\GeoIP"]


def conf_database_dir(conf_files: Sequence[str]) -> Path | None:
    """Return the `DatabaseDirectory` of the first readable GeoIP.conf that sets one."""
    for name in conf_files:
        try:
            text = Path(name).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            key, _, value = line.strip().partition(" ")
            if key == "DatabaseDirectory" and value.strip():
                return Path(value.strip())
    return None


def maxmind_account(env: Mapping[str, str] | None = None) -> Path | None:
    """Return the first GeoIP.conf that sets an AccountID (MaxMind data comes from geoipupdate)."""
    env = os.environ if env is None else env
    names = [c for c in (env.get("GEOIPUPDATE_CONF_FILE"),) if c] + list(CONF_FILES)
    for name in names:
        try:
            text = Path(name).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        if any(line.split()[:1] == ["AccountID"] for line in text.splitlines()):
            return Path(name)
    return None


def _mmdb_files(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.suffix == ".mmdb" and p.is_file())
    except OSError:
        return []


def search_dirs(env: Mapping[str, str] | None = None) -> list[Path]:
    """Return the geoipupdate directories to search, in order, without duplicates."""
    env = os.environ if env is None else env
    confs = [c for c in (env.get("GEOIPUPDATE_CONF_FILE"),) if c] + list(CONF_FILES)
    dirs = [d for d in (env.get("GEOIPUPDATE_DB_DIR"),) if d]
    defaults = list(DEFAULT_DIRS)
    if sys.platform == "win32":  # pragma: no cover  # Windows layout per geoipupdate
        more_confs, more_dirs = _windows_dirs(env)
        confs += more_confs
        defaults += more_dirs
    conf_dir = conf_database_dir(confs)
    if conf_dir is not None:
        dirs.append(str(conf_dir))
    dirs += defaults
    seen: list[Path] = []
    for d in dirs:
        path = Path(d)
        if path not in seen:
            seen.append(path)
    return seen


def discover(
    explicit: Sequence[Path] = (),
    *,
    env: Mapping[str, str] | None = None,
    dirs: Sequence[Path] | None = None,
    data_dir: Path | None = None,
    include_bundled: bool = True,
) -> Iterator[Candidate]:
    """Yield every file to open, explicit first; discovery skips names already found."""
    env = os.environ if env is None else env
    for path in explicit:
        yield Candidate(Path(path), "explicit")
    env_dir = env.get(ENV_DIR)
    if env_dir:
        for path in _mmdb_files(Path(env_dir)):
            yield Candidate(path, "explicit")
    for path in _mmdb_files(data_dir if data_dir is not None else update_dir()):
        yield Candidate(path, "updated")
    names: set[str] = set()
    for folder in search_dirs(env) if dirs is None else dirs:
        for path in _mmdb_files(folder):
            wanted = path.name in MAXMIND_NAMES or path.name.lower().startswith("dbip-")
            if wanted and path.name not in names:
                names.add(path.name)
                yield Candidate(path, "discovered")
    if include_bundled:
        bundled = bundled_path()
        if bundled is not None:
            yield Candidate(bundled, "bundled")
