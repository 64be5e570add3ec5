"""A scrollable, closable screen of text: the alert and flow detail screens use it.

The text is built by `ui.detail` (pure); this screen only shows it, and rebuilds it when the
app says a new snapshot arrived, so an RDAP owner resolved in the background replaces
"pending" while the screen is open. Escape, q or Backspace closes it.
"""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static


class TextScreen(Screen[None]):
    """A titled page of text with a footer."""

    BINDINGS = [  # noqa: RUF012  # Textual declares BINDINGS as a mutable class attribute
        Binding("escape,q,backspace", "close", "Back"),
    ]

    def __init__(
        self, title: str, body: Text | Callable[[], Text], *, name: str | None = None
    ) -> None:
        super().__init__(name=name)
        self.title_text = title
        self.build = body if callable(body) else None
        self.body = body() if callable(body) else body

    def rebuild(self) -> None:
        """Rebuild the text from the latest data (an RDAP owner that just arrived, a count)."""
        if self.build is None:
            return
        self.body = self.build()
        if self.is_mounted:
            self.query_one("#detail-text", Static).update(self.body)

    def compose(self) -> ComposeResult:
        """Title, the scrollable body, the footer."""
        yield Static(Text(f" {self.title_text} ", style="bold reverse"), classes="screen-title")
        with VerticalScroll(classes="detail-body"):
            yield Static(self.body, id="detail-text")
        yield Footer()

    def action_close(self) -> None:
        """Go back to the dashboard."""
        self.dismiss(None)
