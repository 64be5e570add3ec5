"""The Textual dashboard: renders snapshots from an injected feed and never samples.

`run_dashboard(feed, mode_label)` is the entry point for `netwatch watch` and
`netwatch analyze FILE --ui`; Textual is imported only when it is called.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from netwatch.feed import SnapshotFeed


def run_dashboard(
    feed: SnapshotFeed,
    mode_label: str | None = None,
    *,
    title: str = "netwatch",
    now: Callable[[], float] | None = None,
) -> None:
    """Open the dashboard on `feed` until the user quits; the feed is closed afterwards."""
    from netwatch.ui.app import NetwatchApp

    app = NetwatchApp(feed, mode_label=mode_label, title=title, now=now)
    try:
        app.run()
    finally:
        feed.close()
