"""A line of text the screen updates often (at every flush while sending) whose size its CSS
fixes. Textual's `Static.update` re-lays-out the whole screen by default; on the send screen with
10,000 rows that was most of the UI thread's time (bench/send_screen.py). A `Line` redraws only
itself, and not at all when the text is the same as shown."""

from __future__ import annotations

from textual.visual import VisualType
from textual.widgets import Static


class Line(Static):
    """A Static whose CSS fixes its height and width: updating it never changes the layout."""

    _shown: VisualType | None = None

    def update(self, content: VisualType = "", *, layout: bool = False) -> None:
        if content == self._shown and not layout:
            return
        self._shown = content
        super().update(content, layout=layout)
