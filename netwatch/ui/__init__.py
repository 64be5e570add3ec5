"""The Textual dashboard: renders snapshots from an injected feed and never samples.

`run_dashboard(feed, mode_label)` is the entry point for `netwatch watch`, and
`run_snapshots(snapshots)` for `netwatch analyze FILE --ui`; Textual is imported only when
they are called.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from netwatch.errors import NetwatchError

if TYPE_CHECKING:
    from netwatch.feed import FindingsSource, SnapshotFeed
    from netwatch.model import Snapshot
    from netwatch.ui.screens.history import HistorySource


def run_dashboard(
    feed: SnapshotFeed,
    mode_label: str | None = None,
    *,
    title: str = "netwatch",
    now: Callable[[], float] | None = None,
    check: FindingsSource | None = None,
    history: HistorySource | None = None,
    open_history: bool = False,
    focus_alert: str | None = None,
) -> None:
    """Open the dashboard on `feed` until the user quits; the feed is closed afterwards.

    `check` runs `netwatch check` for the check screen; None says it is unavailable.
    `history` reads the usage history for the history screen (`open_history`: show it first).
    `focus_alert` opens on that alert's detail once the feed brings it (`ui.focus`).
    """
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        feed.close()
        raise NetwatchError("the dashboard needs a terminal; run it without --ui for text")
    from netwatch.ui.app import NetwatchApp

    app = NetwatchApp(
        feed,
        mode_label=mode_label,
        title=title,
        now=now,
        check=check,
        history=history,
        open_history=open_history,
        focus_alert=focus_alert,
    )
    try:
        app.run()
    finally:
        feed.close()


def run_snapshots(
    snapshots: Iterable[Snapshot], mode_label: str = "pcap", *, title: str = "netwatch"
) -> None:
    """Open the dashboard on a fixed list of snapshots (`netwatch analyze FILE --ui`)."""
    from netwatch.feed import ReplayFeed

    run_dashboard(ReplayFeed(snapshots), mode_label, title=title)
