"""The help dialog: every key the current screen answers to, with what it does."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

GLOBAL_KEYS = (
    ("ctrl+p", "Command palette: this screen's actions and the themes"),
    ("tab / shift+tab", "Move between panes"),
    ("↑ ↓ pgup pgdn", "Move within a list or table"),
)


class HelpDialog(ModalScreen[None]):
    """Lists the keys of the screen it was opened from."""

    CSS_PATH = "help.tcss"
    BINDINGS = [
        Binding("escape,question_mark,q", "close", "Close", id="close-help", tooltip="Close the help"),
    ]

    def __init__(self, screen: Screen) -> None:
        super().__init__()
        self.rows: list[tuple[str, str]] = []
        seen: set[str] = set()
        for key, active in screen.active_bindings.items():
            binding = active.binding
            if not binding.description or binding.action in seen:
                continue
            if active.node is not screen and active.node is not screen.app:
                continue
            seen.add(binding.action)
            keys = screen.app.get_key_display(binding)
            state = "" if active.enabled else "  (unavailable now)"
            self.rows.append((keys, f"{binding.tooltip or binding.description}{state}"))
        self.rows.extend(GLOBAL_KEYS)
        self.title_text = f"Keys: {getattr(screen, 'HELP_TITLE', type(screen).__name__)}"

    def compose(self) -> ComposeResult:
        width = max(len(keys) for keys, _ in self.rows)
        lines = [Content.assemble((keys.ljust(width), "bold $accent"), "  ", text) for keys, text in self.rows]
        with Vertical(id="help-box") as box:
            box.border_title = self.title_text
            box.border_subtitle = "escape closes"
            yield Static(Content("\n").join(lines), id="help-keys")

    def action_close(self) -> None:
        self.dismiss(None)
