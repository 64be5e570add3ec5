"""Reading a TOML data file netwatch ships or a user supplies, with every failure one line.

The jurisdiction table and the provider facts are both TOML files that a user may replace;
reading one fails in the same few ways (cannot read, not UTF-8, not TOML, nested beyond
Python's recursion limit), and each must be one located `DataFileError`, never a traceback.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from netwatch.errors import DataFileError, Location, one_line


def read_toml(path: Path) -> dict[str, Any]:
    """The parsed document at `path`; raises `DataFileError` naming the file."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DataFileError(f"cannot read: {exc.strerror}", Location(str(path))) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else one_line(str(exc))
        raise DataFileError(f"not valid TOML: {reason}", Location(str(path))) from None
