"""Country -> commonly cited jurisdiction groups (5/9/14 Eyes), from data in jurisdiction.toml.

The groups are data, not code: the bundled TOML lists each group's members and sources, is
validated once, and a file with the same shape can replace it. Errors name the file and key.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from netwatch.enrich.datafile import read_toml
from netwatch.errors import DataFileError, Location

_ISO = re.compile(r"^[A-Z]{2}$")
BUNDLED = "jurisdiction.toml"


@dataclass(frozen=True, slots=True)
class Group:
    """One grouping: its name, member ISO codes and the sources that cite it."""

    name: str
    members: frozenset[str]
    sources: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Jurisdictions:
    """All groups, with a precomputed country -> group names table."""

    groups: tuple[Group, ...]
    by_country: Mapping[str, tuple[str, ...]]

    def of(self, country: str | None) -> tuple[str, ...]:
        """Return the groups `country` is in, in file order (empty for None or unknown)."""
        if country is None:
            return ()
        return self.by_country.get(country.upper(), ())


def parse(data: Mapping[str, Any], origin: str) -> Jurisdictions:
    """Validate the TOML structure and build the lookup table; errors name origin and key."""
    raw = data.get("group")
    if not isinstance(raw, list) or not raw:
        raise DataFileError("needs at least one [[group]]", Location(origin, key="group"))
    groups: list[Group] = []
    for i, item in enumerate(raw):
        where = f"group[{i}]"
        if not isinstance(item, dict):
            raise DataFileError("must be a table", Location(origin, key=where))
        name = item.get("name")
        if not isinstance(name, str) or not name.strip():
            raise DataFileError("needs a name", Location(origin, key=f"{where}.name"))
        members = item.get("members")
        if not isinstance(members, list) or not members:
            raise DataFileError("needs members", Location(origin, key=f"{where}.members"))
        for j, code in enumerate(members):
            if not isinstance(code, str) or not _ISO.match(code):
                raise DataFileError(
                    f"{code!r} is not an ISO 3166-1 alpha-2 code",
                    Location(origin, key=f"{where}.members[{j}]"),
                )
        sources = item.get("sources", [])
        if not isinstance(sources, list) or not all(isinstance(s, str) for s in sources):
            raise DataFileError("must be a list of URLs", Location(origin, key=f"{where}.sources"))
        if any(g.name == name for g in groups):
            raise DataFileError(f"duplicate group {name!r}", Location(origin, key=where))
        groups.append(Group(name, frozenset(members), tuple(sources)))
    table: dict[str, tuple[str, ...]] = {}
    for group in groups:
        for code in sorted(group.members):
            table[code] = (*table.get(code, ()), group.name)
    return Jurisdictions(tuple(groups), table)


def load(path: Path | None = None) -> Jurisdictions:
    """Load a jurisdiction file (the bundled one when `path` is None)."""
    if path is None:
        return bundled()
    return parse(read_toml(path), str(path))


@cache
def bundled() -> Jurisdictions:
    """Load and validate the bundled table once per process."""
    text = resources.files(__package__).joinpath(BUNDLED).read_text(encoding="utf-8")
    return parse(tomllib.loads(text), BUNDLED)
