"""The connections table: a DataTable whose rows are updated in place by key.

`apply(rows)` adds, updates and removes rows by their stable key and then sets the row order
the view computed, so the cursor stays on the same flow and the scroll position survives each
tick. Columns have fixed widths, which lets it skip DataTable's per-cell width measurement;
only cells whose text changed are replaced. That is what makes 10,000 flows fit a tick
(bench/ui.py): the public `add_row`/`remove_row`/`update_cell` path re-measures and
re-indexes per call (remove_row is O(rows)), so a bulk apply goes through the same internal
structures `DataTable.sort` and `clear` use, and bumps `_update_count` once.
"""

from __future__ import annotations

from rich.console import RenderableType
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual._two_way_dict import TwoWayDict
from textual._types import SegmentLines
from textual.message import Message
from textual.widgets import DataTable
from textual.widgets._data_table import Row as TableRow
from textual.widgets._data_table import RowKey, RowRenderables

from netwatch.ui.view import Column, Row

VPN_STYLE = "bold magenta"


def _cell(text: str, column: Column, vpn: bool) -> Text:
    style = VPN_STYLE if vpn and column.key in ("proto", "group") else ""
    return Text(text, style=style, justify="right" if column.numeric else "left", no_wrap=True)


class FlowsTable(DataTable[Text]):
    """Flows (or groups) with stable row keys; the app feeds it rows from `view`."""

    class SortRequested(Message):
        """The user clicked a header: sort by that column."""

        def __init__(self, column: str) -> None:
            super().__init__()
            self.column = column

    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002  # Textual's name
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.columns_spec: tuple[Column, ...] = ()
        self.shown: dict[str, Row] = {}
        self.order: list[str] = []
        self._keys: dict[str, RowKey] = {}

    def set_columns(self, columns: tuple[Column, ...]) -> None:
        """Replace the columns (and drop all rows) when the column set changes."""
        if columns == self.columns_spec:
            return
        self.clear(columns=True)
        for c in columns:
            self.add_column(c.label, width=c.width, key=c.key)
        self.columns_spec = columns
        self.shown = {}
        self.order = []
        self._keys = {}

    def set_sort_marker(self, column: str, reverse: bool) -> None:
        """Mark the sorted column's header with an arrow (and in words for no-colour)."""
        for c in self.columns_spec:
            col = self.columns.get(c.key)  # type: ignore[call-overload]  # ColumnKey is str
            if col is None:
                continue
            mark = ("▼" if reverse else "▲") if c.key == column else ""
            col.label = Text(c.label + mark)
        self._update_count += 1
        self.refresh()

    def cursor_key(self) -> str | None:
        """The key of the row under the cursor, or None for an empty table."""
        if not self.order or not 0 <= self.cursor_row < len(self.order):
            return None
        return self.order[self.cursor_row]

    def apply(self, rows: list[Row]) -> None:
        """Make the table show exactly `rows`, in this order; O(rows) dict work, no rendering.

        Cells are not copied into the DataTable: `_compute_row_renderables` formats the rows
        Textual actually paints (the visible ones) from `shown`, on demand.
        """
        keep = self.cursor_key()
        new = {r.key: r for r in rows}
        if len(new) != len(rows):  # keys must be unique (row order is rebuilt from them)
            rows = list(new.values())
        data, table_rows, keys = self._data, self.rows, self._keys
        for key in [k for k in self.shown if k not in new]:
            rk = keys.pop(key)
            del table_rows[rk]
            del data[rk]
        for key in new:
            if key not in keys:
                rk = keys[key] = RowKey(key)
                data[rk] = {}
                table_rows[rk] = TableRow(rk, 1)
        self.order = [r.key for r in rows]
        self._row_locations = TwoWayDict({keys[k]: i for i, k in enumerate(self.order)})
        self.shown = new
        self._update_count += 1
        self._require_update_dimensions = True
        self.check_idle()
        self._follow(keep)
        self.refresh()

    def _compute_row_renderables(self, row_index: int) -> RowRenderables:
        """Format one row from `shown` when Textual paints it (the header goes to DataTable)."""
        if row_index < 0 or row_index >= len(self.order):
            return super()._compute_row_renderables(row_index)
        row = self.shown[self.order[row_index]]
        spec = self.columns_spec
        cells: list[RenderableType] = [
            _cell(text, col, row.vpn) for text, col in zip(row.cells, spec, strict=True)
        ]
        return RowRenderables(None, cells)

    def _render_cell(
        self,
        row_index: int,
        column_index: int,
        base_style: Style,
        width: int,
        cursor: bool = False,
        hover: bool = False,
    ) -> SegmentLines:
        """Render only the columns in view; the others are blanks the line crop drops anyway.

        DataTable renders every column of each visible row, and with 15 columns at 80 or 120
        cells wide most of a repaint went into cells nobody sees (bench/ui.py "repaint").
        """
        if column_index >= 0 and not self._column_in_view(column_index):
            return [[Segment(" " * width, base_style)]]
        return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)

    def _column_in_view(self, column_index: int) -> bool:
        x = 0
        columns = self.ordered_columns
        for column in columns[:column_index]:
            x += column.get_render_width(self)
        right = x + columns[column_index].get_render_width(self)
        left_edge = self.scroll_x
        return right > left_edge and x < left_edge + self.size.width

    def watch_scroll_x(self, old_value: float, new_value: float) -> None:
        """Other columns came into view: the rendered rows (cached by update count) are stale."""
        if round(old_value) != round(new_value):
            self._update_count += 1
        super().watch_scroll_x(old_value, new_value)

    def _follow(self, key: str | None) -> None:
        """Keep the cursor on the same row key after a reorder; clamp when it went away.

        The top row stays the top row (watch the top talkers); a selected row is followed.
        The cursor is only touched when its row moved, because every cursor change scrolls
        it into view, and a tick must not undo the user's scrolling.
        """
        if not self.order:
            return
        index = None
        if key is not None and self.cursor_row > 0:
            index = self._row_locations.get(self._keys[key]) if key in self._keys else None
        if index is None:
            if self.cursor_row < len(self.order):
                return
            index = len(self.order) - 1
        if index != self.cursor_row:
            self.move_cursor(row=index, animate=False)

    def selected(self) -> Row | None:
        """The row under the cursor."""
        key = self.cursor_key()
        return None if key is None else self.shown.get(key)

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        """Clicking a header asks the app to sort by it."""
        event.stop()
        self.post_message(self.SortRequested(str(event.column_key.value)))
