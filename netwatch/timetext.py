"""Times people type: ISO 8601 or an age (`90s`, `15m`, `1h`, `2d`, `1w`), as epoch seconds.

One parser for every place a user names a time: `--since`/`--until` of `export`, `history`
and `check` (through `cli.export.parse_time`, which turns the error into argparse's) and the
history screen's custom range, so the forms and the error line are the same everywhere.
"""

from __future__ import annotations

import re
import time
from datetime import datetime

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_when(text: str, now: float | None = None) -> float:
    """`text` as epoch seconds: an age counts back from `now` (the wall clock when None), and
    an ISO 8601 time without a zone is the user's local time. Raises ValueError with one line
    naming the forms otherwise."""
    value = text.strip()
    m = _RELATIVE.match(value)
    if m:
        base = time.time() if now is None else now
        return base - float(m.group(1)) * _UNITS[m.group(2)]
    try:
        parsed = datetime.fromisoformat(value)
        return (parsed if parsed.tzinfo else parsed.astimezone()).timestamp()
    except (ValueError, OverflowError, OSError):  # OverflowError/OSError: year 1 or 9999 ends
        raise ValueError(
            f"{text!r} is not an ISO 8601 time (2024-05-01T10:00:00Z) or an age (1h, 2d)"
        ) from None
