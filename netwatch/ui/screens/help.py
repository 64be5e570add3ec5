"""The help screen (`?`): keys, the filter language, what the columns and badges mean."""

from __future__ import annotations

from rich.text import Text

from netwatch.ui.query import HELP as QUERY_HELP
from netwatch.ui.screens.text_screen import TextScreen

KEYS = (
    ("q", "quit (restores the terminal)"),
    ("?", "this help"),
    ("/", "filter (Enter applies, Escape clears)"),
    ("p", "pause rendering (sampling continues)"),
    ("g", "group by: flows, process, country, ASN"),
    ("s / S", "sort by the next / previous column"),
    ("r", "reverse the sort order"),
    ("click header", "sort by that column"),
    ("Enter", "open the flow (or group) under the cursor / the selected alert"),
    ("o", "process view of the selected flow's process"),
    ("a / t", "focus the alerts pane / the table"),
    ("c", "show or hide the charts"),
    ("v", "check: is this PC safe? VPN software, relay, listeners (R runs it again)"),
    ("h", "history: the last hour / day / week by program, country, provider (h d w)"),
    ("ctrl+p", "command palette"),
)

COLUMNS = (
    ("Dir", "out = this host connected, in = a peer connected here, lstn = listening"),
    ("Cty", "country code (always) and flag; lan/lo for local addresses"),
    (
        "Proto",
        "what the dissectors recognised; [VPN] [ANON] badges, [CTR] a container's flow, "
        "[VPNGATE] [TOR] lists",
    ),
    ("Up/s Down/s", "bytes per second since the previous snapshot"),
    ("Eyes", "the narrowest commonly cited 5/9/14 Eyes grouping of the country"),
    ("?", "process unknown: another user's socket without privileges, or raw traffic"),
)


def help_text() -> Text:
    """The help page."""
    out = Text()
    out.append("Keys\n", style="bold underline")
    for key, what in KEYS:
        out.append(f"  {key:<14}", style="bold")
        out.append(f"{what}\n")
    out.append("\nFilter language\n", style="bold underline")
    for part in QUERY_HELP.split("  "):
        out.append(f"  {part.strip()}\n")
    out.append("  example: proc:vpnclient country:RU,CN -port:443 vpn:true\n")
    out.append("\nColumns\n", style="bold underline")
    for col, what in COLUMNS:
        out.append(f"  {col:<14}", style="bold")
        out.append(f"{what}\n")
    return out


class HelpScreen(TextScreen):
    """`?`: keys, filter language, columns."""

    def __init__(self) -> None:
        super().__init__("Help", help_text())
