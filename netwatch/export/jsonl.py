"""JSONL export: one codec alert record per line, as `analyze --format jsonl` writes it."""

from __future__ import annotations

from netwatch import codec
from netwatch.model import Alert


def format_jsonl(alert: Alert) -> str:
    """The alert as one compact JSON line (no newline)."""
    return codec.dumps(alert)
