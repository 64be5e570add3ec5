"""The status line: mode, capture on/off and why, drops, GeoIP data, what is missing.

Two lines of plain words (colour only repeats them): a user without privileges reads here what
netwatch cannot see and why, the first thing to know before trusting an empty table.
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.text import Text
from textual.widgets import Static

from netwatch.model import Snapshot
from netwatch.ui.view import Grouping, ViewState


def geoip_label(snapshot: Snapshot) -> str:
    """The GeoIP data in use: the status's own words, else the first data file the remotes
    name (`dbip-country-lite.mmdb 2026-11-01`), else `none`."""
    if snapshot.status.geoip:
        return snapshot.status.geoip
    for ef in snapshot.flows:
        if ef.remote is None:
            continue
        for src in ef.remote.sources:
            built = time.strftime("%Y-%m-%d", time.gmtime(src.built)) if src.built else "undated"
            return f"{Path(src.file).name} {built}"
    return "none"


def status_text(
    snapshot: Snapshot | None,
    state: ViewState,
    shown: int,
    mode_label: str | None,
    note: str | None = None,
) -> Text:
    """Build the two status lines from the latest snapshot and the view state."""
    out = Text(no_wrap=True, overflow="ellipsis")
    if snapshot is None:
        out.append(f"{(mode_label or 'netwatch').upper()}  waiting for the first snapshot...")
        if note:
            out.append(f"\n{note}", style="bold red")
        return out
    st, c = snapshot.status, snapshot.counters
    out.append(f" {(mode_label or st.mode).upper()} ", style="bold reverse")
    if st.mode == "pcap":
        out.append(f"  {st.capture_reason or 'capture file'}")
    elif st.capture:
        out.append("  capture on", style="green")
    else:
        reason = f" ({st.capture_reason})" if st.capture_reason else ""
        out.append(f"  capture off{reason}", style="yellow")
    drops = c.capture_drops + c.queue_drops
    out.append(f"  drops {drops}", style="bold red" if drops else "")
    if c.starts_missed:
        causes = (
            f"budget {c.starts_missed_budget}, gone {c.starts_missed_gone},"
            f" queue {c.starts_missed_queue}"
        )
        out.append(f"  unnamed starts {c.starts_missed} ({causes})", style="yellow")
    share = c.share.bytes_share()
    if share is not None:
        known, guessed, unknown = share
        out.append(
            f"  last min bytes: {known:.0%} named, {guessed:.0%} guessed, {unknown:.0%} unknown",
            style="yellow" if unknown >= 0.05 else "",
        )
    out.append(f"  flows {shown}/{len(snapshot.flows)}")
    out.append(f"  GeoIP: {geoip_label(snapshot)}")
    if state.paused:
        out.append("  PAUSED", style="bold reverse yellow")
    out.append("\n")
    # A note (the feed ended or failed, an alert asked for is not there) is news: it leads
    # the line, where a long `missing:` cannot push it past the terminal's edge.
    if note:
        out.append(note, style="bold red")
        out.append("  |  ")
    # Then what the user just asked for (group, sort, filter): short, and the answer to a
    # key press, so it must not be pushed off the edge by the sources' words after it.
    extras = []
    if state.grouping is not Grouping.NONE:
        extras.append(f"group: {state.grouping.value}")
    extras.append(f"sort: {state.sort}{' desc' if state.reverse else ' asc'}")
    if not state.query.empty:
        extras.append(f"filter: {state.query.text}")
    if state.query.errors:
        extras.append("filter error: " + "; ".join(state.query.errors))
    out.append("  ".join(extras) + "  |  ")
    # What cannot be seen comes first: it holds for the whole session; a skipped data file
    # (damaged, or unreadable here) follows and names itself.
    if st.missing:
        out.append("missing: " + "; ".join(st.missing), style="yellow")
    elif st.mode == "pcap":
        out.append("processes are unknown in a capture file", style="yellow")
    elif not st.privileged and st.mode == "local":
        out.append("unprivileged: other users' processes may be unknown", style="yellow")
    elif not st.skipped:
        out.append("all sources available", style="green")
    if st.starts:
        gap = "" if out.plain.endswith(("\n", "|  ")) else "  "
        out.append(f"{gap}short connections: {st.starts}")
    if st.skipped:
        gap = "" if out.plain.endswith(("\n", "|  ")) else "  "
        out.append(f"{gap}skipped data files: " + "; ".join(st.skipped), style="bold red")
    return out


class StatusBar(Static):
    """Shows `status_text`; keeps the plain text for tests and screen readers."""

    plain = ""

    def show(self, text: Text) -> None:
        """Replace the status text."""
        self.plain = text.plain
        self.update(text)
