"""Python rules that need memory: a program's first connection, and its first new country.

Both keep first-seen state in a `FirstSeenStore`. The default keeps it in memory; the store
layer can supply one that survives restarts (a key-value table is enough), so a restarted
daemon does not report every program again. Keys are plain strings:
`program:<exe or name>` and `country:<exe or name>|<CC>`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from netwatch.detect.fields import Env
from netwatch.model import EnrichedFlow, Evidence


class FirstSeenStore(Protocol):
    """First-seen times by key: all that `process.first_connection` and `geo.new_country` keep."""

    def get(self, key: str) -> float | None:
        """When `key` was first seen, or None."""
        ...

    def put(self, key: str, when: float) -> None:
        """Record `key` as first seen at `when` (only called for unseen keys)."""
        ...


class MemoryFirstSeen:
    """The default store: a dict, forgotten when the process ends."""

    def __init__(self) -> None:
        self.seen: dict[str, float] = {}

    def get(self, key: str) -> float | None:
        """When `key` was first seen, or None."""
        return self.seen.get(key)

    def put(self, key: str, when: float) -> None:
        """Record `key`."""
        self.seen.setdefault(key, when)


Selected = tuple[EnrichedFlow, tuple[Evidence, ...]]


def program_key(ef: EnrichedFlow) -> str | None:
    """A program's identity: its executable path, else its name; None when unknown."""
    p = ef.flow.process
    if p is None:
        return None
    return p.exe or p.name


class FirstConnection:
    """Fires once per program: the first time it has a flow since monitoring began."""

    incremental = True
    """A flow it was shown once can never fire later (its program is then stored), so the
    engine shows it only flows that are new since the last tick."""
    repeats = False
    """Reported once per flow."""

    def __init__(self, store: FirstSeenStore) -> None:
        self.store = store

    def select(self, flows: Sequence[EnrichedFlow], env: Env) -> Iterable[Selected]:
        """The first flow of each program the store has not seen."""
        for ef in flows:
            prog = program_key(ef)
            if prog is None:
                continue
            key = f"program:{prog}"
            if self.store.get(key) is not None:
                continue
            self.store.put(key, ef.flow.first_seen or env.now)
            yield ef, (Evidence("program", prog),)


class NewCountry:
    """Fires when a known program talks to a country it has not talked to before.

    A program's countries in the tick it is first seen are its baseline (that tick belongs to
    `process.first_connection`), so a new install does not raise one alert per country.
    """

    incremental = True
    """As for `FirstConnection`: a flow once shown has its program and country stored."""
    repeats = False
    """Reported once per flow."""

    def __init__(self, store: FirstSeenStore) -> None:
        self.store = store

    def select(self, flows: Sequence[EnrichedFlow], env: Env) -> Iterable[Selected]:
        """Flows to countries their program has not talked to before."""
        fresh: set[str] = set()
        for ef in flows:
            prog = program_key(ef)
            country = ef.remote.country if ef.remote is not None else None
            if prog is None or not country:
                continue
            base = f"countries:{prog}"
            if self.store.get(base) is None:
                self.store.put(base, env.now)
                fresh.add(base)
            key = f"country:{prog}|{country}"
            if self.store.get(key) is not None:
                continue
            self.store.put(key, env.now)
            if base not in fresh:
                yield ef, (Evidence("program", prog), Evidence("new_country", country))
