"""CSV export: the fixed header of `schema.HEADER`, RFC 4180 quoting via the csv module.

Rows end in CRLF as RFC 4180 says; fields with commas, quotes or line breaks are quoted and
quotes doubled. Empty values are empty fields.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator

from netwatch.export.schema import HEADER, row
from netwatch.model import Alert


def _line(values: Iterable[object]) -> str:
    buf = io.StringIO()
    csv.writer(buf, dialect="excel", lineterminator="\r\n").writerow(
        "" if v is None else v for v in values
    )
    return buf.getvalue()


def csv_header() -> str:
    """The header line, CRLF-terminated."""
    return _line(HEADER)


def format_csv(alert: Alert) -> str:
    """One alert as a CRLF-terminated CSV row."""
    return _line(row(alert))


def csv_lines(alerts: Iterable[Alert]) -> Iterator[str]:
    """Header then one row per alert."""
    yield csv_header()
    for a in alerts:
        yield format_csv(a)
