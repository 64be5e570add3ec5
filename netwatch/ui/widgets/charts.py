"""Charts people would rather look at than read: throughput bars, bytes by country.

Throughput over the last minutes, for all traffic and for the selected process, as one-line
bar charts scaled from zero (`fmt.spark`; Textual's Sparkline scales min-to-max, which draws a
steady 1 KB/s as nothing and a flat line as full), and a bar chart of bytes per country with
the code always shown, so it reads without colour.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from netwatch.ui import fmt
from netwatch.ui.stats import History


def country_bars(totals: list[tuple[str, int]], width: int, rows: int) -> Text:
    """`RU ███████ 12M` bars, longest for the largest, at most `rows` lines."""
    out = Text(no_wrap=True)
    top = totals[:rows]
    if not top:
        out.append("no remote traffic yet", style="dim")
        return out
    peak = max(n for _, n in top) or 1
    bar_room = max(4, width - 10)
    for i, (code, n) in enumerate(top):
        bar = "█" * max(1, round(bar_room * n / peak)) if n else ""
        out.append(f"{code:<4}", style="bold")
        out.append(bar, style="cyan")
        out.append(f" {fmt.size(n)}")
        if i < len(top) - 1:
            out.append("\n")
    return out


def charts_text(
    history: History, process: str | None, totals: list[tuple[str, int]], width: int, rows: int
) -> Text:
    """The whole chart panel: totals line and bars, process line and bars, country bars."""
    out = Text(no_wrap=True, overflow="crop")
    last = history.total[-1] if history.total else None
    span = history.total[-1].at - history.total[0].at if len(history.total) > 1 else 0.0
    out.append("All ", style="bold")
    out.append(f"last {fmt.duration(span)}  ", style="dim")
    if last is not None:
        out.append(f"down {fmt.rate(last.down) or '0'}/s  up {fmt.rate(last.up) or '0'}/s")
    out.append("\n")
    out.append(fmt.spark(history.series(), width), style="green")
    out.append("\n")
    series = history.series(process) if process else []
    peak = fmt.rate(max(series, default=0.0)) or "0"
    out.append("Proc ", style="bold")
    out.append(f"{process or '-'}  peak {peak}/s\n")
    out.append(fmt.spark(series, width), style="magenta")
    out.append("\n")
    out.append_text(country_bars(totals, width, max(1, rows - 4)))
    return out


class Charts(Static):
    """Throughput (all, selected process) and bytes by country, redrawn per snapshot."""

    def show(self, history: History, process: str | None, totals: list[tuple[str, int]]) -> None:
        """Redraw from the history and the per-country totals."""
        width = max(10, self.content_size.width or 38)
        rows = max(5, self.content_size.height or 8)
        self.update(charts_text(history, process, totals, width, rows))
