"""Suppression and lifecycle: findings with the same identifier become one alert.

Zeek's identifier + `suppress_for` and glances' event lifecycle: the first finding opens an
alert; later findings with the same (rule, identifier) within `suppress_for` of its last
sighting update it, and its `count` rises by the occurrences (distinct flows, or distinct
peers for window rules) it had not counted yet. An alert not seen for `suppress_for` closes
and is reported once more as closed; the next finding opens a new alert with a new id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from netwatch.detect.rule import Finding
from netwatch.model import Action, Alert, AlertState

MAX_OCCURRENCES = 4096
"""Occurrences remembered per alert; older ones are forgotten (and could count again)."""


def alert_id(rule_id: str, identifier: str, first_seen: float) -> str:
    """A stable id: the same finding in a replayed capture gets the same id."""
    digest = hashlib.sha1(identifier.encode(), usedforsecurity=False).hexdigest()[:10]
    return f"{rule_id}:{digest}:{int(first_seen)}"


@dataclass
class _Open:
    alert: Alert
    suppress_for: float
    last_seen: float
    occurrences: dict[str, None] = field(default_factory=dict)
    count: int = 1
    latest: Finding | None = None
    """The newest finding of this tick whose message is not yet on `alert`."""


class Suppressor:
    """Keeps the open alerts and turns each tick's findings into alert changes."""

    def __init__(self) -> None:
        self._open: dict[tuple[str, str], _Open] = {}

    def __len__(self) -> int:
        return len(self._open)

    def open_alerts(self) -> list[Alert]:
        """Every open alert, oldest first."""
        return sorted((o.alert for o in self._open.values()), key=lambda a: a.first_seen)

    def touch(self, rule_id: str, identifier: str, occurrence: str, at: float) -> bool:
        """Note a repeat of an occurrence an open alert already counted; False if it is news.

        The engine asks this before it renders a finding, so a long-lived flow that matches on
        every tick costs a dict lookup, not a message.
        """
        entry = self._open.get((rule_id, identifier))
        if entry is None or occurrence not in entry.occurrences:
            return False
        if at - entry.last_seen > entry.suppress_for:
            return False
        entry.last_seen = max(entry.last_seen, at)
        return True

    def update(
        self, findings: Iterable[Finding], actions: Mapping[str, Action] | None = None
    ) -> list[Alert]:
        """Fold findings into alerts; return those opened or changed (count or message).

        `actions` is the policy's action per rule id (unlisted rules alert); a new alert
        carries it, so stores, exports and the dashboard tell logged findings apart.
        """
        changed: dict[tuple[str, str], _Open] = {}
        for f in findings:
            key = (f.rule.id, f.identifier)
            entry = self._open.get(key)
            if entry is not None and f.at - entry.last_seen > entry.suppress_for:
                entry = None
            if entry is None:
                entry = self._start(f, (actions or {}).get(f.rule.id, Action.ALERT))
                self._open[key] = entry
                changed[key] = entry
                continue
            new = [o for o in f.occurrences if o not in entry.occurrences]
            self._remember(entry, new)
            entry.last_seen = max(entry.last_seen, f.at)
            entry.count += len(new)
            reworded = f.details is None and f.message != entry.alert.message
            if new or reworded or key in changed:
                entry.latest = f
                changed[key] = entry
        for entry in changed.values():
            self._apply(entry)
        return [entry.alert for entry in changed.values()]

    @staticmethod
    def _apply(entry: _Open) -> None:
        """Put the latest finding's message, evidence, flow and counts on the alert."""
        f, before = entry.latest, entry.alert
        entry.latest = None
        if f is None:
            return
        message, evidence = f.text()
        ef = f.flow
        entry.alert = replace(
            before,
            last_seen=entry.last_seen,
            count=entry.count,
            message=message,
            severity=f.severity,
            evidence=evidence or before.evidence,
            flow_key=ef.flow.key if ef is not None else before.flow_key,
            process=(ef.flow.process or before.process) if ef is not None else before.process,
            remote=(ef.remote or before.remote) if ef is not None else before.remote,
            label=(ef.flow.label or before.label) if ef is not None else before.label,
            direction=ef.flow.direction if ef is not None else before.direction,
        )

    def _start(self, f: Finding, action: Action) -> _Open:
        ef = f.flow
        message, evidence = f.text()
        count = max(1, len(set(f.occurrences)))
        alert = Alert(
            id=alert_id(f.rule.id, f.identifier, f.at),
            rule_id=f.rule.id,
            title=f.rule.title,
            severity=f.severity,
            identifier=f.identifier,
            message=message,
            first_seen=f.at,
            last_seen=f.at,
            count=count,
            state=AlertState.OPEN,
            flow_key=None if ef is None else ef.flow.key,
            process=None if ef is None else ef.flow.process,
            remote=None if ef is None else ef.remote,
            evidence=evidence,
            tags=f.rule.tags,
            action=action,
            label=None if ef is None else ef.flow.label,
            direction=None if ef is None else ef.flow.direction,
        )
        entry = _Open(alert, f.rule.suppress_for, f.at, count=count)
        self._remember(entry, f.occurrences)
        return entry

    @staticmethod
    def _remember(entry: _Open, occurrences: Iterable[str]) -> None:
        for o in occurrences:
            entry.occurrences[o] = None
        while len(entry.occurrences) > MAX_OCCURRENCES:
            del entry.occurrences[next(iter(entry.occurrences))]

    def expire(self, now: float) -> list[Alert]:
        """Close alerts not seen for their `suppress_for`; return them (state closed)."""
        closed = []
        for key, entry in list(self._open.items()):
            if now - entry.last_seen > entry.suppress_for:
                closed.append(
                    replace(entry.alert, state=AlertState.CLOSED, last_seen=entry.last_seen)
                )
                del self._open[key]
        return closed
