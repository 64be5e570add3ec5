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

from collections.abc import Iterator, Mapping, Sequence
from itertools import repeat
from operator import attrgetter

from rich.cells import cell_len, set_cell_size
from rich.console import RenderableType
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual._two_way_dict import TwoWayDict
from textual._types import SegmentLines
from textual.message import Message
from textual.widgets import DataTable
from textual.widgets._data_table import Column as TableColumn
from textual.widgets._data_table import Row as TableRow
from textual.widgets._data_table import RowKey, RowRenderables

from netwatch.ui.view import Column, FlowRows, Row

VPN_STYLE = "bold magenta"
_ROW_KEY = attrgetter("key")
_MAX_LOOKS = 20_000
"""Rendered cells kept (a screenful is a few hundred; the cache is dropped when full)."""
_NO_STYLE = Style()
_VPN_COLUMNS = ("proto", "group")
"""The columns `_cell` styles for VPN rows."""


def _cell(text: str, column: Column, vpn: bool) -> Text:
    style = VPN_STYLE if vpn and column.key in _VPN_COLUMNS else ""
    return Text(text, style=style, justify="right" if column.numeric else "left", no_wrap=True)


class _RowIndex(TwoWayDict[RowKey, int]):
    """DataTable's row index (row key <-> position) as `apply` leaves it, made without a walk
    in Python: positions by the key's text (a `RowKey` finds its `str`: same hash, and
    `RowKey.__eq__` takes a `str`), and keys by position read from the order when asked
    (DataTable asks for the rows it paints). Changed through DataTable's own methods
    (`add_row` after `apply`), it becomes a plain two-way dict first."""

    def __init__(self, index: dict[str, int], order: list[str], keys: dict[str, RowKey]) -> None:
        super().__init__({})
        self._forward = index  # type: ignore[assignment]  # str keys, see above
        self._order: list[str] | None = order
        self._keys = keys

    def _plain(self) -> None:
        if self._order is not None:
            self._reverse = dict(enumerate(map(self._keys.__getitem__, self._order)))
            self._forward = dict(self._forward)  # no longer `apply`'s index
            self._order = None

    def __setitem__(self, key: RowKey, value: int) -> None:
        self._plain()
        super().__setitem__(key, value)

    def __delitem__(self, key: RowKey) -> None:
        self._plain()
        super().__delitem__(key)

    def get_key(self, value: int) -> RowKey | None:
        order = self._order
        if order is None:
            return super().get_key(value)
        return self._keys[order[value]] if 0 <= value < len(order) else None

    def contains_value(self, value: int) -> bool:
        order = self._order
        if order is None:
            return super().contains_value(value)
        return 0 <= value < len(order)


class _Shown(Mapping[str, Row]):
    """`FlowsTable.shown`: the rows in view order, looked up by key."""

    def __init__(self, rows: Sequence[Row], index: dict[str, int]) -> None:
        self._rows = rows
        self._index = index

    def __getitem__(self, key: str) -> Row:
        return self._rows[self._index[key]]

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)


class FlowsTable(DataTable[Text]):
    """Flows (or groups) with stable row keys; the app feeds it rows from `view`."""

    class SortRequested(Message):
        """The user clicked a header: sort by that column."""

        def __init__(self, column: str) -> None:
            super().__init__()
            self.column = column

    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002  # Textual's name
        # Set before DataTable's __init__, whose watchers already read the row order.
        self.columns_spec: tuple[Column, ...] = ()
        self.view: Sequence[Row] = ()
        self.order: list[str] = []
        self._index: dict[str, int] = {}
        self._keys: dict[str, RowKey] = {}
        self._table_rows: dict[str, TableRow] = {}
        # What `apply` left, so the row-order views below can be made in C from `order`.
        self._locations: TwoWayDict[RowKey, int] | None = None
        self._offsets: list[tuple[RowKey, int]] | None = None
        self._ordered: list[TableRow] | None = None
        self._in_view: tuple[tuple[object, ...], tuple[bool, ...]] = ((), ())
        self._columns_cache: tuple[object, int, list[TableColumn]] | None = None
        # Rendered cells by what they look like (text, style, width, cursor, ...), not by row.
        self._looks: dict[tuple[object, ...], SegmentLines] = {}
        self._metas: dict[tuple[int, int], Style] = {}
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)

    def set_columns(self, columns: tuple[Column, ...]) -> None:
        """Replace the columns (and drop all rows) when the column set changes."""
        if columns == self.columns_spec:
            return
        self.clear(columns=True)
        for c in columns:
            self.add_column(c.label, width=c.width, key=c.key)
        self.columns_spec = columns
        self.view = ()
        self._index = {}
        self.order = []
        self._keys = {}
        self._table_rows = {}
        self._locations = None

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

    def apply(self, rows: Sequence[Row]) -> None:
        """Make the table show exactly `rows`, in this order; no rendering.

        Cells are not copied into the DataTable: `_compute_row_renderables` formats the rows
        Textual actually paints (the visible ones) from `rows`, on demand, and `view.FlowRows`
        makes those `Row`s only then. Only rows that came or went are visited in Python; the
        order and DataTable's row index are rebuilt by C-level walks (`dict(zip(...))`,
        `map`) keyed by the row's text key: a `RowKey` hashes in Python, a `str` with the same
        hash and equality does not, so DataTable's lookups by `RowKey` find the `str` keys.
        """
        keep = self.cursor_key()
        order = rows.keys if isinstance(rows, FlowRows) else [r.key for r in rows]
        present = set(order)
        if len(present) != len(order):  # keys must be unique (row order is rebuilt from them)
            unique = {r.key: r for r in rows}
            rows, order = list(unique.values()), list(unique)
        data, table_rows, keys, by_text = self._data, self.rows, self._keys, self._table_rows
        for key in keys.keys() - present:
            rk = keys.pop(key)
            del table_rows[rk], data[rk], by_text[key]
        for key in present - keys.keys():
            rk = keys[key] = RowKey(key)
            data[rk] = {}
            table_rows[rk] = by_text[key] = TableRow(rk, 1)
        self.order = order
        self.view = rows
        self._index = dict(zip(order, range(len(order)), strict=True))
        locations = _RowIndex(self._index, order, keys)
        self._row_locations = self._locations = locations
        self._offsets = self._ordered = None
        self._update_count += 1
        self._require_update_dimensions = True
        self.check_idle()
        self._follow(keep)
        self.refresh()

    @property
    def shown(self) -> Mapping[str, Row]:
        """The rows shown, by key (rows are made as they are looked up)."""
        return _Shown(self.view, self._index)

    def _applied(self) -> bool:
        """True while the rows are exactly what `apply` left (no add_row, clear or sort since)."""
        return self._row_locations is self._locations and len(self.rows) == len(self.order)

    @property
    def _y_offsets(self) -> list[tuple[RowKey, int]]:
        """Every row is one line high: (row key, 0) per row in order, made once per apply.

        DataTable rebuilds this list row by row in Python each time the update count moves,
        which at 10,000 rows was most of a repaint.
        """
        if not self._applied():
            return super()._y_offsets
        if self._offsets is None:
            self._offsets = list(zip(map(self._keys.__getitem__, self.order), repeat(0)))
        return self._offsets

    def _get_offsets(self, y: int) -> tuple[RowKey, int]:
        """The row at line `y` and the line within it (always 0), read from the order: the
        painted lines need no list of every row's offsets."""
        if not self._applied():
            return super()._get_offsets(y)
        if self.show_header:
            if y < self.header_height:
                return self._header_row_key, y
            y -= self.header_height
        if not 0 <= y < len(self.order):
            raise LookupError(f"Y coord {y!r} is greater than total height")
        return self._keys[self.order[y]], 0

    @property
    def _total_row_height(self) -> int:
        return len(self.order) if self._applied() else super()._total_row_height

    @property
    def ordered_rows(self) -> list[TableRow]:
        """DataTable's rows in order, made once per apply (DataTable: per update count)."""
        if not self._applied():
            return super().ordered_rows
        if self._ordered is None:
            self._ordered = list(map(self._table_rows.__getitem__, self.order))
        return self._ordered

    def _compute_row_renderables(self, row_index: int) -> RowRenderables:
        """Format one row from `view` when Textual paints it (the header goes to DataTable)."""
        if row_index < 0 or row_index >= len(self.order):
            return super()._compute_row_renderables(row_index)
        row = self.view[row_index]
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
        if not (0 <= row_index < len(self.order) and column_index >= 0):  # header, label
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        row = self.view[row_index]
        text = row.cells[column_index]
        column = self.columns_spec[column_index]
        plain = not (row.vpn and column.key in _VPN_COLUMNS) and text.isprintable()
        if plain and not (self.fixed_rows or self.fixed_columns):
            return self._plain_cell(row_index, column_index, base_style, width, cursor, hover, text)
        look = (
            text,
            row.vpn,
            column_index,
            width,
            base_style,
            cursor,
            hover,
            self._show_hover_cursor,
            self._pseudo_class_state,
            self.show_cursor,
        )
        lines = self._looks.get(look)
        if lines is None:
            lines = super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
            if len(self._looks) >= _MAX_LOOKS:
                self._looks.clear()
            self._looks[look] = lines
            return lines
        # The same text in the same style was rendered before, at another row: only the
        # mouse metadata (row and column, for clicks) differs, and adding a style with the
        # new metadata replaces it, as it is the last style DataTable adds to the cell.
        at = self._metas.get((row_index, column_index))
        if at is None:
            at = self._metas[row_index, column_index] = Style.from_meta(
                {"row": row_index, "column": column_index}
            )
        return [
            [Segment(seg.text, (seg.style or _NO_STYLE) + at) for seg in line] for line in lines
        ]

    def _plain_cell(
        self,
        row_index: int,
        column_index: int,
        base_style: Style,
        width: int,
        cursor: bool,
        hover: bool,
        text: str,
    ) -> SegmentLines:
        """A cell of unstyled, printable text, drawn without rich's render pipeline.

        It is what `DataTable._render_cell` draws for our `_cell` Text (one line, no wrap,
        padded by `cell_padding`, justified, cropped with rich's cell widths) in the same
        style (base style with the click metadata, then the cursor or hover style, then the
        post style); `tests/tui/test_flows_table_cells.py` compares the two. A repaint draws
        a few hundred cells, and rich's general pipeline took most of it.
        """
        pad = self.cell_padding
        room = width - 2 * pad
        if room <= 0:
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        component, post = self._get_styles_to_render_cell(
            False,
            False,
            False,
            hover,
            cursor,
            self.show_cursor,
            self._show_hover_cursor,
            self.cursor_foreground_priority == "css",
            self.cursor_background_priority == "css",
        )
        at = self._metas.get((row_index, column_index))
        if at is None:
            at = self._metas[row_index, column_index] = Style.from_meta(
                {"row": row_index, "column": column_index}
            )
        style = base_style + at + component
        if post:
            style += post
        if self.columns_spec[column_index].numeric:  # rich strips a right-justified line
            text = text.rstrip()
        used = cell_len(text)
        if used >= room:
            text = set_cell_size(text, room)
        elif self.columns_spec[column_index].numeric:
            text = " " * (room - used) + text
        else:
            text += " " * (room - used)
        margin = " " * pad
        return [[Segment(margin + text + margin, style)]]

    def _clear_caches(self) -> None:
        super()._clear_caches()
        self._looks.clear()

    def notify_style_update(self) -> None:
        """Styles changed (theme, CSS): rendered cells are stale, like DataTable's own."""
        super().notify_style_update()
        self._looks.clear()

    def _column_in_view(self, column_index: int) -> bool:
        """Whether a column shows at the current horizontal scroll, worked out once per
        update, scroll position and width rather than once per cell."""
        left_edge = self.scroll_x
        cache_key = (self._update_count, left_edge, self.size.width)
        if self._in_view[0] != cache_key:
            shown = []
            x = 0
            for column in self.ordered_columns:
                width = column.get_render_width(self)
                shown.append(x + width > left_edge and x < left_edge + self.size.width)
                x += width
            self._in_view = (cache_key, tuple(shown))
        return self._in_view[1][column_index]

    @property
    def ordered_columns(self) -> list[TableColumn]:
        """DataTable's columns in order, kept until a column is added or the columns cleared
        (DataTable rebuilds the list on every call, several times per painted cell)."""
        locations = self._column_locations
        cached = self._columns_cache
        if cached is None or cached[0] is not locations or cached[1] != len(self.columns):
            cached = self._columns_cache = (locations, len(self.columns), super().ordered_columns)
        return cached[2]

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
        return None if self.cursor_key() is None else self.view[self.cursor_row]

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        """Clicking a header asks the app to sort by it."""
        event.stop()
        self.post_message(self.SortRequested(str(event.column_key.value)))
