"""Byte counts as people read them: one scale for the dashboard, `snapshot` and alert messages.

Decimal (SI) units, 1 KB = 1,000 bytes, as the seed case reads ("5 B sent, 4.2 KB received")
and as desktop file managers and traffic monitors show sizes today. Two spellings of the same
number: `long` for messages (`4.2 KB`) and `short` for table columns at most five characters
wide (`4.2K`). Pure.
"""

from __future__ import annotations

UNITS = ("B", "KB", "MB", "GB", "TB", "PB")


def _scaled(n: float) -> tuple[float, str]:
    """`n` divided down to below 1,000 of the largest unit that allows it.

    The bound is 999.5, not 1,000: what would round to `1000 KB` reads `1.0 MB`.
    """
    value = float(n)
    for unit in UNITS[:-1]:
        if abs(value) < 999.5:
            return value, unit
        value /= 1000
    return value, UNITS[-1]


def _number(value: float) -> str:
    """One decimal below 10 (`4.2`), none above (`13`); 9.96 reads `10`, not `10.0`."""
    return f"{value:.1f}" if abs(value) < 9.95 else f"{value:.0f}"


def long(n: float | None) -> str:
    """`5 B`, `4.2 KB`, `13 MB`; an unknown size reads `? B`."""
    if n is None:
        return "? B"
    value, unit = _scaled(n)
    return f"{int(value)} B" if unit == "B" else f"{_number(value)} {unit}"


def short(n: float | None) -> str:
    """`512B`, `4.2K`, `13M` (at most five characters); an unknown size reads `-`."""
    if n is None:
        return "-"
    value, unit = _scaled(n)
    return f"{int(value)}B" if unit == "B" else f"{_number(value)}{unit[0]}"
