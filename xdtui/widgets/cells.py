"""Keyed DataTables updated by diff: the one base class every table of the console uses.

A cell is first computed as a plain `(text, style)` pair — cheap to compare —
and turned into a Rich `Text` only when it differs from what the table shows.
`KeyedTable.apply_rows` removes rows that went away, adds new ones and
updates only the cells that changed, inside `app.batch_update()`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from rich.cells import cell_len
from rich.text import Text
from textual.binding import Binding
from textual.geometry import Size
from textual.widgets import DataTable
from textual.widgets._data_table import DuplicateKey, Row, RowKey

Spec = tuple[str, str]


def render(spec: Spec) -> Text | str:
    text, style = spec
    return Text(text, style=style, no_wrap=True, overflow="ellipsis") if style else text


class KeyedTable(DataTable):
    """A DataTable whose rows are keyed by a domain key (guest name, file path); j/k move like arrows."""

    BINDINGS = [Binding("j", "cursor_down", "Down", show=False), Binding("k", "cursor_up", "Up", show=False)]

    def __init__(self, **kw) -> None:
        kw.setdefault("cursor_type", "row")
        self._drawn_cells: dict[tuple, object] = {}  # see _render_cell
        super().__init__(**kw)
        self._shown: dict[str, tuple[Spec, ...]] = {}
        self._keys: list[str] = []
        self.cells_written = 0  # cells written by the last apply_rows (the benchmark reads it)

    def set_columns(self, columns: Sequence[tuple[str, str] | tuple[str, str, int | None]]) -> None:
        """(key, label[, width]): a width for columns whose cells change in place (update_cell
        does not widen a column), none for columns measured from their rows when added."""
        self.clear(columns=True)
        self._shown.clear()
        for key, label, *width in columns:
            w = width[0] if width else None
            self.add_column(label, key=key, width=max(w, len(label)) if w else None)
        self._keys = [c[0] for c in columns]

    def apply_rows(self, want: Mapping[str, tuple[Spec, ...]], order: Iterable[str] | None = None) -> bool:
        """Make the table show `want` (key -> cells); True when rows were added or removed.

        Changed cells are written straight into the table's data and the
        table is refreshed once: `update_cell` refreshes per call, which costs
        more than the change itself when a refresh touches every row.
        """
        written = 0
        changed_rows = False
        touched = False
        keys = self._keys
        at_cursor = self.key_at_cursor() if self._shown else None  # the cursor stays on its row's key
        data = self._data  # row key -> column key -> cell (keys compare equal to their str)
        new: list[tuple[str, tuple[Spec, ...]]] = []
        with self.app.batch_update():
            for key in [k for k in self._shown if k not in want]:
                self.remove_row(key)
                del self._shown[key]
                changed_rows = True
            for key in (order if order is not None else want):
                specs = want[key]
                old = self._shown.get(key)
                if old is None:
                    new.append((key, specs))
                    written += len(specs)
                    changed_rows = True
                elif old != specs:
                    row = data[key]  # type: ignore[index]
                    for col, a, b in zip(keys, old, specs):
                        if a != b:
                            row[col] = render(b)  # type: ignore[index]
                            written += 1
                    touched = True
                self._shown[key] = specs
            if new:
                self._add_rows(new)
            if touched:
                self._update_count += 1
                self.refresh()
            if changed_rows and at_cursor is not None and at_cursor in self._shown:
                self.keep_cursor_on(at_cursor)
        self.cells_written = written
        return changed_rows

    def _add_rows(self, rows: Sequence[tuple[str, tuple[Spec, ...]]]) -> None:
        """`add_row` for many one-line rows at once, then their columns measured at once.

        Textual's `add_row` sorts the columns and re-validates the cursor for
        every row (a third of the cost of filling the 1,000-guest table) and
        leaves measuring to the next idle moment — after a frame was drawn
        with the old widths, so the table was drawn twice before it was
        right.  The same bookkeeping as `add_row(..., height=1)` (Textual
        8.2.8; tests/tui pin it), once.
        """
        columns = self.ordered_columns
        start = self.row_count
        added = set()
        for i, (key, specs) in enumerate(rows):
            row_key = RowKey(key)
            if row_key in self._row_locations:
                raise DuplicateKey(f"The row key {row_key!r} already exists.")
            self._row_locations[row_key] = start + i
            self._data[row_key] = {column.key: render(spec) for column, spec in zip(columns, specs)}
            self.rows[row_key] = Row(row_key, 1, None, False)
            added.add(row_key)
        self.cursor_coordinate = self.cursor_coordinate
        if start == 0 and rows and self.columns and self.show_cursor and self.cursor_type != "none":
            self._highlight_cursor()  # a cursor can be shown where there was none: RowHighlighted, as add_row posts
        self._update_dimensions(added)  # measured now: the first frame with these rows has the right widths
        self.refresh()

    #: cells kept drawn (a 1,000-row table shows a few hundred at a time)
    DRAWN_CELLS = 8192

    def _render_cell(self, row_index: int, column_index: int, base_style, width: int, cursor: bool = False,
                     hover: bool = False):
        """A body cell is drawn again only when its own content, place or look changed.

        Textual keys its drawn cells by the table's update count, which every
        change bumps: a refresh that changed the CPU column drew all eight
        columns of every visible row again, and drawing is most of a
        refresh's cost.  Here the key is the cell's spec (what `apply_rows`
        shows) with its row, column, width and every style input Textual's
        own key has; a style or layout change clears both caches.
        """
        content: object = None
        if row_index == -1 and 0 <= column_index < len(self.columns):  # the header
            label = self.ordered_columns[column_index].label
            content = ("header", label.plain, str(label.style))
        elif row_index >= 0 and column_index >= 0:
            row_key = self._row_locations.get_key(row_index)
            specs = self._shown.get(row_key.value) if row_key is not None else None
            if specs is not None and column_index < len(specs):
                content = (row_key.value, specs[column_index])
        if content is None:
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        key = (content, column_index, row_index, base_style, width, cursor, hover, self._show_hover_cursor,
               self._pseudo_class_state)
        lines = self._drawn_cells.get(key)
        if lines is None:
            lines = super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
            if len(self._drawn_cells) >= self.DRAWN_CELLS:
                self._drawn_cells.clear()
            self._drawn_cells[key] = lines
        return lines

    def _clear_caches(self) -> None:
        super()._clear_caches()
        self._drawn_cells.clear()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._drawn_cells.clear()

    def keep_cursor_on(self, key: str) -> None:
        try:
            row = self.get_row_index(key)
        except Exception:  # not placed yet
            return
        if row != self.cursor_row:
            self.move_cursor(row=row, animate=False, scroll=False)

    def key_at_cursor(self) -> str | None:
        if not self.row_count:
            return None
        try:
            return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except Exception:
            return None

    def _update_dimensions(self, new_rows) -> None:  # type: ignore[override]
        """Column widths and virtual size after rows were added, without Textual's per-cell measuring.

        Our cells are one-line text whose width is `cell_len(text)`: measuring
        1,000 new rows this way is ~10× cheaper than rendering each cell.  Also,
        Textual 8.2.8 caches rendered lines by an update count that measuring
        does not bump, so lines drawn between add_row and this idle-time
        measurement would keep the old widths: bump it.
        """
        columns = self.ordered_columns
        for row_key in new_rows:
            specs = self._shown.get(row_key.value)
            if specs is None or row_key not in self._row_locations:
                continue
            for column, (text, _style) in zip(columns, specs):
                w = cell_len(text)
                if w > column.content_width:
                    column.content_width = w
        width = sum(c.get_render_width(self) for c in self.columns.values()) + self._row_label_column_width
        header = self.header_height if self.show_header else 0
        self.virtual_size = Size(width, self._total_row_height + header)
        self._update_count += 1
