"""`/` filters a table by text, as in mutt, aerc and lazygit: type to narrow, enter keeps the
filter and goes back to the table, escape clears it (in the bar, or in the table while a kept
filter narrows it: the screen's escape clears the filter before it goes back)."""

from __future__ import annotations

from textual import on
from textual.binding import Binding
from textual.message import Message
from textual.widgets import Input


class FilterBar(Input):
    """Hidden until opened; posts `FilterBar.Narrowed` with the text as it is typed."""

    DEFAULT_CSS = """
    FilterBar, FilterBar:focus { display: none; height: 1; border: none; padding: 0 1; background: $boost; }
    FilterBar.-open { display: block; }
    """
    BINDINGS = [Binding("escape", "clear", "Clear filter", show=False)]

    class Narrowed(Message):
        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    def __init__(self, *, id: str | None = None, target: str = "") -> None:
        super().__init__(placeholder="filter: type to narrow · enter keeps it · escape clears", id=id)
        self.target = target  # the widget to focus when done

    def open(self) -> None:
        self.add_class("-open")
        # Focus now, not after the next refresh: keys typed right after `/` belong to the filter.
        self.screen.set_focus(self)

    def words(self) -> list[str]:
        return self.value.lower().split()

    def matches(self, *texts: object) -> bool:
        """Every typed word is in one of the texts (case ignored)."""
        words = self.words()
        if not words:
            return True
        haystack = " ".join(str(t) for t in texts).lower()
        return all(word in haystack for word in words)

    @on(Input.Changed)
    def _changed(self, event: Input.Changed) -> None:
        event.stop()
        self.post_message(self.Narrowed(self.value))

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if not self.value:
            self.remove_class("-open")
        self._back()

    def clear_if_kept(self) -> bool:
        """Clear a filter kept with enter; True if there was one (escape then means "clear", not "back")."""
        if not self.value:
            return False
        self.action_clear()
        return True

    def action_clear(self) -> None:
        self.value = ""
        self.remove_class("-open")
        self._back()

    def _back(self) -> None:
        if self.target:
            self.screen.query_one(self.target).focus()
