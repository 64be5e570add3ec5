"""Messages the feed worker posts to the dashboard (past-tense events, as in toolong).

`SnapshotReady` may be replaced by a newer one while the app is busy, so a slow terminal
renders only the newest snapshot; the app folds every snapshot's alerts into its index before
rendering, and `AlertsChanged` (never replaced) carries the alerts of snapshots that were
replaced, so none are lost.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from netwatch.model import Alert, Snapshot


@dataclass
class SnapshotReady(Message):
    """A new snapshot arrived from the feed."""

    snapshot: Snapshot

    def can_replace(self, message: Message) -> bool:
        """A newer snapshot makes an older, not yet handled one obsolete."""
        return isinstance(message, SnapshotReady)


@dataclass
class AlertsChanged(Message):
    """Alerts raised or updated by one snapshot; never replaced, so none are lost."""

    alerts: tuple[Alert, ...]


@dataclass
class FeedEnded(Message):
    """The feed stopped: `error` says why when it failed, None when it simply ended."""

    error: str | None = None
