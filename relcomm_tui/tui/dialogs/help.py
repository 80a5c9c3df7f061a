"""The help dialog: every key the current screen answers to, with what it does."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

GLOBAL_KEYS = (("↑ ↓ pgup pgdn", "Move within a list, table or preview"),)
SKIPPED_ACTIONS = {"screen.copy_text", "app.copy_text", "copy_text", "help_quit"}


class HelpDialog(ModalScreen[None]):
    """Lists the keys of the screen it was opened from."""

    CSS_PATH = "help.tcss"
    BINDINGS = [
        Binding("escape,question_mark,q", "close", "Close", id="close-help", tooltip="Close the help"),
    ]

    def __init__(self, screen: Screen) -> None:
        super().__init__()
        keys_for: dict[str, list[str]] = {}
        text_for: dict[str, str] = {}
        for active in screen.active_bindings.values():
            binding = active.binding
            if not binding.description or binding.action in SKIPPED_ACTIONS:
                continue
            if active.node is not screen and active.node is not screen.app:
                continue
            # One row per action, with every key that does it (q and ctrl+q both quit).
            keys_for.setdefault(binding.action, []).append(screen.app.get_key_display(binding))
            state = "" if active.enabled else " (locked)"
            text_for.setdefault(binding.action, f"{binding.tooltip or binding.description}{state}")
        self.rows: list[tuple[str, str]] = [(", ".join(dict.fromkeys(keys_for[action])), text_for[action])
                                            for action in keys_for]
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
