"""Command palette entries (ctrl+p): sort by any column, group, pause, filter, check, help."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import TYPE_CHECKING, cast

from textual.command import DiscoveryHit, Hit, Hits, Provider

from netwatch.ui.view import FLOW_COLUMNS, GROUP_COLUMNS, Grouping

if TYPE_CHECKING:
    from netwatch.ui.app import NetwatchApp


class DashboardCommands(Provider):
    """The dashboard's actions as palette commands."""

    def _commands(self) -> list[tuple[str, Callable[[], object], str]]:
        app = cast("NetwatchApp", self.app)
        out: list[tuple[str, Callable[[], object], str]] = [
            ("Pause / resume rendering", app.action_pause, "freeze the table; sampling goes on"),
            ("Filter flows", app.action_filter, "proc:NAME country:CC vpn:true port:N -term"),
            ("Help", app.action_help, "keys, filter language, columns"),
            ("Check this PC", app.action_check, "VPN software, relay, listeners, VPN alerts"),
            ("Show / hide charts", app.action_charts, "throughput and bytes by country"),
            ("Reverse sort order", app.action_reverse, "ascending / descending"),
        ]
        for g in Grouping:
            out.append((f"Group by {g.value}", partial(app.set_state, grouping=g), "table rows"))
        seen = set()
        for c in (*FLOW_COLUMNS, *GROUP_COLUMNS):
            if c.key in seen:
                continue
            seen.add(c.key)
            out.append((f"Sort by {c.label}", partial(app.sort_by, c.key), f"column {c.key}"))
        return out

    async def discover(self) -> Hits:
        """Offer every command before anything is typed."""
        for name, run, help_text in self._commands():
            yield DiscoveryHit(name, run, help=help_text)

    async def search(self, query: str) -> AsyncIterator[Hit]:
        """Fuzzy-match the commands."""
        matcher = self.matcher(query)
        for name, run, help_text in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), run, help=help_text)
