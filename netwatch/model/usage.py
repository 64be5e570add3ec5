"""Usage history queries and their answers: what `netwatch history`, the history screen and
the daemon's history request ask (`UsageQuery`) and get back (`UsageAnswer` of `UsageTotal`,
and `Away` for "while you were away").

Pure data, here rather than beside the rollups in `store/rollup.py`, because they cross the
daemon's socket: the codec (below the store in the layers) serialises them.
"""

from __future__ import annotations

from dataclasses import dataclass

from netwatch.model.alert import Alert

BY: dict[str, tuple[str, ...]] = {
    "process": ("process_name", "process_exe"),
    "country": ("country",),
    "asn": ("asn", "as_org"),
    "provider": ("provider",),
    "remote": ("remote_ip", "country", "as_org"),
    "label": ("label",),
    "transport": ("transport",),
}
"""`netwatch history --by` and the dashboard's top lists: the dims columns of each grouping."""
TIME_BY = {"hour": 3600, "day": 86400}
"""Groupings by time: the bucket width in seconds (UTC)."""


@dataclass(frozen=True, slots=True)
class UsageQuery:
    """A window, a grouping and filters; None is "any"."""

    since: float | None = None
    until: float | None = None
    by: str = "process"
    """A key of `BY` or `TIME_BY`."""
    step: int | None = None
    """Also group by time buckets of this many seconds (the dashboard's chart)."""
    process: str | None = None
    """Process name or executable path."""
    country: str | None = None
    remote: str | None = None
    top: int | None = None
    """Keep only the largest groups by total bytes."""


@dataclass(frozen=True, slots=True)
class UsageTotal:
    """One group of a query: its key values, bytes, new connections and the time it spans."""

    key: tuple[str | int | None, ...]
    """The `BY` columns' values, or (bucket start,) for `TIME_BY`."""
    bytes_out: int
    bytes_in: int
    connections: int
    first: int
    """Start of the oldest bucket that counted."""
    last: int
    """End of the newest bucket that counted."""
    at: int | None = None
    """Start of the `UsageQuery.step` bucket, when the query asked for one."""

    @property
    def total(self) -> int:
        """Bytes both ways."""
        return self.bytes_out + self.bytes_in


@dataclass(frozen=True, slots=True)
class UsageAnswer:
    """What a usage query found: the totals and which spans (60, 3600, 86400 s) it read."""

    totals: list[UsageTotal]
    spans: list[int]
    coarse: bool = False
    """An end of the window fell inside an hour whose minutes are gone: it counted whole."""
    truncated: bool = False
    """Only part of the totals: the daemon cut its answer to its bounds (`history_wire`)."""


@dataclass(frozen=True, slots=True)
class Away:
    """What happened since a time (the dashboard's "while you were away"): programs that
    went online for the first time, countries no program had talked to before, alerts."""

    since: float
    programs: tuple[tuple[str, float], ...]
    """(program: executable or name, first seen), oldest first."""
    countries: tuple[tuple[str, float], ...]
    """(country code, first seen by any program), oldest first."""
    alerts: tuple[Alert, ...]
    """Alerts last seen since then, oldest first."""
