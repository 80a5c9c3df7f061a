"""Tables and lists that move as mutt, aerc and lazygit users expect, and use the width they have.

`ListTable` is a DataTable with j/k, g/G and home/end (first/last row, never a sideways scroll);
`ListOptions` is the same for an OptionList. `Fit` columns share the table's width: each starts at
its minimum, grows towards what its content needs (`want`) by weight, and the last flexible
column takes what is left, so a wider terminal shows more of a name instead of empty space.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.binding import Binding
from textual.widgets import DataTable, OptionList

MOVE_KEYS = [
    Binding("j", "cursor_down", "Down", show=False),
    Binding("k", "cursor_up", "Up", show=False),
    Binding("g,home", "first", "First", show=False),
    Binding("G,end", "last", "Last", show=False),
]


class Cell(Text):
    """A cell of a fixed-width column: never measured.

    Textual measures every cell of every new row (and asks the terminal its size for each), which
    for 10,000 deliveries is 50,000 measures and seconds of a frozen screen. `Fit` columns get their
    widths from the screen, so there is nothing to measure: without `__rich_measure__`, Textual
    takes its default and Rich pads the cell to the column's width when it renders it."""

    __rich_measure__ = None  # type: ignore[assignment]


class ListTable(DataTable):
    """A row table with list keys, and cell updates that cost nothing while out of sight."""

    BINDINGS = MOVE_KEYS

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._unseen_changes = False

    def update_cell_lazily(self, row_key: str, column_key: str, value: object) -> None:
        """`update_cell`, but a row out of view is changed without redrawing the rows in view.

        Every `update_cell` makes Textual redraw every visible row; during a send most changes are
        to rows nobody sees. Those are written straight into the table's data, and the next scroll
        (or any visible change) redraws with them."""
        index = self._row_locations.get(row_key)
        top = int(self.scroll_y)
        if index is None or top - 1 <= index <= top + self.size.height:
            self.update_cell(row_key, column_key, value)
            return
        self._data[row_key][column_key] = value  # keys compare equal to their strings
        self._unseen_changes = True

    def _update_dimensions(self, new_rows) -> None:
        # Textual measures every cell of every new row to size auto-width columns. Ours get their
        # widths set (add_fit_columns, apply_widths), so with 10,000 rows that measuring was most of
        # the table's fill time and changed nothing. Labelled or auto-height rows are still measured.
        # (A private hook of the pinned Textual: tests/test_tui_table_fill.py holds it to account.)
        if self.columns and not any(column.auto_width for column in self.columns.values()):
            rows = self.rows
            new_rows = [key for key in new_rows
                        if (row := rows.get(key)) is not None and (row.label is not None or row.auto_height)]
        super()._update_dimensions(new_rows)

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        if self._unseen_changes:
            # Rows drawn before may have changed while out of view: drop what was drawn.
            self._unseen_changes = False
            self._update_count += 1
            self._clear_caches()
        super().watch_scroll_y(old_value, new_value)

    def action_first(self) -> None:
        if self.row_count:
            self.move_cursor(row=0)

    def action_last(self) -> None:
        if self.row_count:
            self.move_cursor(row=self.row_count - 1)


class ListOptions(OptionList):
    """An option list with list keys."""

    BINDINGS = MOVE_KEYS  # OptionList has first/last actions of its own


@dataclass(frozen=True)
class Fit:
    """One column: its key and label, the width it never goes below, how eagerly it grows."""

    key: str
    label: str
    min: int
    weight: int = 0      # 0: stays at `min` (until its content asks for more and room is left)
    flex: bool = False   # takes whatever is left at the end (a reason, a problem)
    extra: bool = False  # beyond the screen's width on purpose: scroll right (or open the row) to see it


def fit_widths(columns: list[Fit], available: int, wants: dict[str, int], padding: int = 1) -> dict[str, int]:
    """Widths for `columns` in `available` cells (cell padding included in the count)."""
    widths = {c.key: c.min for c in columns}
    columns = [c for c in columns if not c.extra]
    spare = available - sum(c.min + 2 * padding for c in columns)
    if spare <= 0:
        return widths  # narrower than the minimums: the table scrolls sideways
    # Grow towards what the content needs, the heavier columns first in proportion.
    for _ in range(3):
        hungry = [c for c in columns if wants.get(c.key, c.min) > widths[c.key] and c.weight]
        if not hungry or spare <= 0:
            break
        total = sum(c.weight for c in hungry)
        given = 0
        for c in hungry:
            share = max(1, spare * c.weight // total)
            grow = min(share, wants[c.key] - widths[c.key], spare - given)
            widths[c.key] += grow
            given += grow
        spare -= given
    for c in columns:  # still room: fixed columns whose content is longer get it
        if spare <= 0:
            break
        if not c.weight and not c.flex and wants.get(c.key, c.min) > widths[c.key]:
            grow = min(wants[c.key] - widths[c.key], spare)
            widths[c.key] += grow
            spare -= grow
    flex = [c for c in columns if c.flex]
    if flex and spare > 0:
        widths[flex[-1].key] += spare
    return widths


def add_fit_columns(table: DataTable, columns: list[Fit]) -> None:
    for column in columns:
        table.add_column(column.label, key=column.key, width=column.min)


def apply_widths(table: DataTable, columns: list[Fit], wants: dict[str, int]) -> None:
    """Size the columns to the table's width now (call on resize and when content grows)."""
    available = table.scrollable_content_region.width or table.size.width
    if not available:
        return
    widths = fit_widths(columns, available, wants, table.cell_padding)
    changed = False
    for column in table.columns.values():
        width = widths.get(str(column.key.value))
        if width is not None and column.width != width:
            column.width = width
            changed = True
    if changed:
        # Textual has no public way to resize a column: re-measure on the next idle, drop cached lines.
        table._require_update_dimensions = True
        table._clear_caches()
        table.refresh(layout=True)
