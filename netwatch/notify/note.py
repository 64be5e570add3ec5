"""What a notification says: one alert, or a digest of the alerts a rate limit held back.

Channels render a `Note` their own way (a desktop bubble, a webhook body, a command's stdin);
the alerts inside are the codec's records, so a receiver reads the same JSON as `export`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from netwatch import codec
from netwatch.model import Alert, Severity

DIGEST_LINES = 20
"""Alerts a digest's text lists one per line; the rest are counted ("and 80 more")."""


@dataclass(frozen=True, slots=True)
class Note:
    """One message to send: its title, its text, and the alerts it is about."""

    title: str
    body: str
    severity: Severity
    alerts: tuple[Alert, ...]

    @property
    def digest(self) -> bool:
        """Whether this note stands for several alerts."""
        return len(self.alerts) > 1

    def to_dict(self) -> dict[str, Any]:
        """The JSON a webhook (`shape = "json"`) and a command receive."""
        return {
            "type": "notification",
            "title": self.title,
            "body": self.body,
            "severity": self.severity.value,
            "digest": self.digest,
            "alerts": [codec.alert_to_dict(a) for a in self.alerts],
        }

    def to_json(self) -> str:
        """`to_dict` as compact JSON text."""
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False)


def single(alert: Alert) -> Note:
    """The note for one alert: its title, its message."""
    return Note(f"netwatch: {alert.title}", alert.message, alert.severity, (alert,))


def digest(alerts: list[Alert], more: int = 0) -> Note:
    """One note for a burst: the count in the title, a line per alert (up to `DIGEST_LINES`).

    `more` counts alerts the batcher did not keep (its memory is bounded).
    """
    total = len(alerts) + more
    worst = max((a.severity for a in alerts), key=lambda s: s.rank, default=Severity.INFO)
    lines = [f"[{a.severity.value}] {a.title}: {a.message}" for a in alerts[:DIGEST_LINES]]
    if total > len(lines):
        lines.append(f"and {total - len(lines)} more")
    return Note(f"netwatch: {total} alerts", "\n".join(lines), worst, tuple(alerts))
