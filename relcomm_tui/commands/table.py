"""Plain-text tables for the headless commands: every column aligned, fitted to the terminal.

Cells are measured as the terminal draws them (a CJK character takes two columns, a combining
mark none), so "awaiting confirmation" or a long name never pushes its row out of line. On a
terminal the table is fitted to its width: the column marked `shrink` (a recipient) is cut with
"…" first, then the last column (a server's reply), and the least useful columns are left out
when even that cannot fit (80 columns); piped into a file or a script nothing is cut.
Cells must already be `visible()`: this module only measures and pads.
"""

from __future__ import annotations

import shutil
import sys
import unicodedata
from collections.abc import Sequence

GAP = "  "


def cell_width(text: str) -> int:
    width = 0
    for char in text:
        if unicodedata.combining(char):
            continue
        width += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return width


def cut(text: str, width: int) -> str:
    """`text` in at most `width` columns, ending in "…" when it was cut."""
    if cell_width(text) <= width:
        return text
    if width <= 0:
        return ""
    out, used = [], 0
    for char in text:
        size = 0 if unicodedata.combining(char) else (2 if unicodedata.east_asian_width(char) in ("W", "F") else 1)
        if used + size > width - 1:
            break
        out.append(char)
        used += size
    return "".join(out) + "…"


def pad(text: str, width: int) -> str:
    return text + " " * max(0, width - cell_width(text))


def terminal_width(stream=None) -> int | None:
    """The terminal's width when output goes to one, else None (no limit: scripts get every character)."""
    stream = stream or sys.stdout
    try:
        if not stream.isatty():
            return None
    except (AttributeError, ValueError, OSError):
        return None
    return shutil.get_terminal_size((100, 24)).columns


def fit(rows: Sequence[Sequence[str]], *, limit: int | None, indent: int = 0, shrink: int | None = None,
        min_shrink: int = 16, drop: Sequence[int] = (), min_last: int = 12) -> list[int]:
    """Column widths for `rows` (the header included): each column as wide as its widest cell. With a
    `limit`, columns in `drop` are left out (width 0, in that order) while the rest cannot fit with
    the `shrink` column at `min_shrink` and the last one at `min_last`; then the `shrink` column gives
    way, then the last column."""
    count = max(len(row) for row in rows)
    widths = [max((cell_width(row[i]) for row in rows if i < len(row)), default=0) for i in range(count)]
    if limit is None:
        return widths

    def shown() -> list[int]:
        return [i for i in range(count) if widths[i] > 0]

    def total(least: bool = False) -> int:
        columns = shown()
        sizes = [min(widths[i], min_shrink) if least and i == shrink else
                 min(widths[i], min_last) if least and i == count - 1 else widths[i] for i in columns]
        return indent + sum(sizes) + len(GAP) * (len(columns) - 1)

    for column in drop:
        if total(least=True) <= limit or len(shown()) <= 2:
            break
        widths[column] = 0
    last = shown()[-1]
    if total() > limit and last == count - 1:  # the last column (a reply) gives way first, down to min_last
        widths[last] = max(min(widths[last], min_last), widths[last] - (total() - limit))
    if shrink is not None and total() > limit:
        widths[shrink] = max(1, widths[shrink] - (total() - limit))
    if total() > limit:
        widths[last] = max(1, widths[last] - (total() - limit))
    return widths


def lines(rows: Sequence[Sequence[str]], widths: Sequence[int], *, indent: int = 0) -> list[str]:
    """Each row with its cells cut and padded to `widths`; the last cell is not padded."""
    out = []
    for row in rows:
        kept = [(cut(cell, width), width) for cell, width in zip(row, widths) if width > 0]
        text = GAP.join([pad(cell, width) for cell, width in kept[:-1]] + [cell for cell, _ in kept[-1:]])
        out.append((" " * indent + text).rstrip())
    return out
