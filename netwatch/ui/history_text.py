"""Text for the history screen: the stacked throughput chart, top lists, "while you were away".

Pure (Rich Text only), so the pilot tests and the chart's arithmetic are checked without a
terminal. The chart is drawn with characters, one column per time step and one fill
character per program (`FILLS`: it reads without colour; colours are decoration), stacked
from the bottom in the order of the legend, scaled from zero to the busiest step.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from rich.text import Text

from netwatch.model import Severity
from netwatch.store.rollup import Away, UsageTotal
from netwatch.ui import fmt

FILLS = ("█", "▓", "▒", "░", "#")
STYLES = ("cyan", "magenta", "green", "yellow", "bright_black")
LABEL = 6
"""Columns of the chart's y-axis labels (`12.3M` and a space)."""


@dataclass(frozen=True, slots=True)
class Range:
    """A window the screen offers: its length and the chart's step (both seconds); a custom
    range also has the window itself (`fixed`: since, until), which does not follow now."""

    name: str
    seconds: int
    step: int
    fixed: tuple[int, int] | None = None


RANGES = {
    "hour": Range("hour", 3600, 60),
    "day": Range("day", 86400, 1200),
    "week": Range("week", 7 * 86400, 10800),
}
"""60, 72 and 56 columns: each fits 80 columns with the labels."""

COLUMNS = 72
"""Most chart columns a custom range may take (80 columns less the y labels and a margin)."""
STEPS = (60, 120, 300, 600, 1200, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 2 * 86400,
         7 * 86400, 14 * 86400, 28 * 86400, 56 * 86400, 112 * 86400, 364 * 86400)  # fmt: skip
"""Chart steps a custom range picks from: whole minutes under an hour, whole hours under a
day, whole days beyond, so each column is read from the store's minute, hour or day rows."""


def custom(since: float, until: float) -> Range:
    """The range [since, until) with the finest step whose columns fit `COLUMNS` (the window
    rounded out to whole steps, so the chart's columns line up with the store's buckets)."""
    lo, hi = int(since), -(-until // 1)
    hi = int(max(hi, lo + 1))
    step = STEPS[-1]
    for s in STEPS:
        if -(-hi // s) - lo // s <= COLUMNS:
            step = s
            break
    return Range("custom", hi - lo, step, (lo, hi))


def window(r: Range, now: float, bounds: tuple[int, int] | None) -> tuple[int, int, bool]:
    """(since, until, moved): the last `r` ending now, on step boundaries; when the history
    ended before that window began (a store from another day), the window that ends with it
    instead (`moved` True). A custom range is its own window."""
    if r.fixed is not None:
        return r.fixed[0], r.fixed[1], False
    end = int(now)
    moved = False
    if bounds is not None and bounds[1] <= end - r.seconds:
        end, moved = bounds[1], True
    end = -(-end // r.step) * r.step
    return end - r.seconds, end, moved


def columns_of(since: int, until: int, step: int) -> tuple[int, int]:
    """(start, columns) of the chart of [since, until): from the step bucket `since` is in
    to the one `until` ends in, so a custom window's ragged ends get a column each."""
    start = since - since % step
    return start, max(1, -(-(until - start) // step))


def series(
    totals: Sequence[UsageTotal], since: int, step: int, columns: int, top: int = 4
) -> list[tuple[str, list[int]]]:
    """Bytes per step for the `top` programs by name (largest first) and `other`."""
    per: dict[str, list[int]] = {}
    for t in totals:
        if t.at is None:
            continue
        col = (t.at - since) // step
        if 0 <= col < columns:
            name = str(t.key[0]) if t.key and t.key[0] is not None else "(unknown)"
            per.setdefault(name, [0] * columns)[col] += t.total
    ranked = sorted(per.items(), key=lambda kv: (-sum(kv[1]), kv[0]))
    out = [(name, values) for name, values in ranked[:top]]
    rest = ranked[top:]
    if rest:
        other = [sum(vals[i] for _, vals in rest) for i in range(columns)]
        out.append(("other", other))
    return out


def stacked_chart(data: Sequence[tuple[str, Sequence[int]]], height: int) -> Text:
    """`height` rows of stacked columns, a y label at the top (bytes per step) and at zero."""
    columns = len(data[0][1]) if data else 0
    totals = [sum(vals[c] for _, vals in data) for c in range(columns)]
    peak = max(totals, default=0)
    out = Text(no_wrap=True, overflow="crop")
    # Cumulative heights per column, rounded once each so a stack is never taller than its
    # total and a series never vanishes for rounding in a column where it is the largest.
    stacks: list[list[int]] = []
    for c in range(columns):
        acc, edges = 0, []
        for _, vals in data:
            acc += vals[c]
            edges.append(round(acc * height / peak) if peak else 0)
        stacks.append(edges)
    for row in range(height - 1, -1, -1):
        if row == height - 1:
            label = fmt.size(peak) if peak else "0"
        elif row == 0:
            label = "0"
        else:
            label = ""
        out.append(f"{label:>{LABEL - 1}} ", style="dim")
        for c in range(columns):
            below = 0
            for i, edge in enumerate(stacks[c]):
                if below <= row < edge:
                    out.append(FILLS[i % len(FILLS)], style=STYLES[i % len(STYLES)])
                    break
                below = edge
            else:
                out.append(" ")
        if row:
            out.append("\n")
    return out


def axis(since: int, until: int, columns: int, step: int) -> Text:
    """Start and end times under the chart (UTC, as the detail screens show times), and what
    one column is (`per 20m`) between them."""
    left = _when(since, until - since)
    right = _when(until, until - since)
    middle = f"per {fmt.duration(step)}"
    room = max(2, columns - len(left) - len(right) - len(middle))
    gap = " " * (room // 2)
    line = left + gap + middle + " " * (room - room // 2) + right
    return Text(" " * LABEL + line, style="dim", no_wrap=True)


def _when(ts: float, span: int) -> str:
    fmt_ = "%H:%MZ" if span < 86400 else "%m-%d %H:%MZ"
    return time.strftime(fmt_, time.gmtime(ts))


def legend(data: Sequence[tuple[str, Sequence[int]]]) -> Text:
    """`█ curl 12M  ▓ ssh 3.0M ...`: which fill is which program, with its bytes."""
    out = Text(no_wrap=True, overflow="ellipsis")
    for i, (name, vals) in enumerate(data):
        if i:
            out.append("  ")
        out.append(FILLS[i % len(FILLS)] + " ", style=STYLES[i % len(STYLES)])
        out.append(f"{name} {fmt.size(sum(vals))}")
    return out


def top_line(title: str, totals: Sequence[UsageTotal], width: int, index: int = 0) -> Text:
    """`Countries: US 1.2G · DE 300M ...`, as many as fit in `width`; each group is named by
    its key's `index`-th value."""
    out = Text(no_wrap=True, overflow="ellipsis")
    out.append(f"{title}: ", style="bold")
    if not totals:
        out.append("none", style="dim")
        return out
    used = len(title) + 2
    for i, t in enumerate(totals):
        value = t.key[index] if len(t.key) > index else None
        name = "-" if value is None else str(value)
        item = f"{name} {fmt.size(t.total)}"
        sep = " · " if i else ""
        if used + len(sep) + len(item) > width and i:
            break
        out.append(sep, style="dim")
        out.append(item)
        used += len(sep) + len(item)
    return out


def spark(values: Sequence[int], width: int) -> str:
    """A one-line bar per step, scaled from zero (`fmt.spark`)."""
    return fmt.spark([float(v) for v in values], width)


def where_text(
    program: str, remotes: Sequence[UsageTotal], when: Sequence[int], width: int
) -> Text:
    """The selected program: the remotes it talked to most and its bytes over the range."""
    out = Text(no_wrap=True, overflow="ellipsis")
    out.append(f"{program}\n", style="bold")
    out.append("when ", style="dim")
    out.append(spark(when, max(8, width - 5)), style="magenta")
    out.append("\n")
    if not remotes:
        out.append("no remote traffic in this range", style="dim")
    for t in remotes:
        ip, cc, org = (None, None, None) if len(t.key) < 3 else t.key[:3]
        out.append(f"{ip or '-'} ", style="bold")
        out.append(f"{cc or '--'} {fmt.size(t.total)} ")
        out.append(f"{org or ''}\n", style="dim")
    return out


def away_text(away: Away | None, note: str | None = None) -> Text:
    """ "While you were away": new programs, new countries, alerts fired, on two lines."""
    out = Text(overflow="ellipsis")
    out.append("While you were away", style="bold")
    if away is None:
        out.append(f"  {note or 'not available'}", style="dim")
        return out
    out.append(f" (since {time.strftime('%m-%d %H:%MZ', time.gmtime(away.since))})\n")
    progs = ", ".join(p.rpartition("/")[2] or p for p, _ in away.programs) or "none"
    countries = ", ".join(c for c, _ in away.countries) or "none"
    out.append("new programs: ", style="dim")
    out.append(progs)
    out.append("  new countries: ", style="dim")
    out.append(countries)
    out.append("  alerts: ", style="dim")
    out.append(_alerts(away))
    return out


def _alerts(away: Away) -> str:
    """`3 (1 high, 2 low)`: worst severity first."""
    if not away.alerts:
        return "none"
    counts: dict[Severity, int] = {}
    for a in away.alerts:
        counts[a.severity] = counts.get(a.severity, 0) + 1
    parts = ", ".join(
        f"{n} {sev.value}" for sev, n in sorted(counts.items(), key=lambda kv: -kv[0].rank)
    )
    return f"{len(away.alerts)} ({parts})"
