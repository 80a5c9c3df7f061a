"""Tick a manual step (a call, a presentation) done, or mark an in-doubt delivery delivered,
with an optional note such as who answered and when."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from ...common.terminal_text import visible, visible_lines


class ManualDoneDialog(ModalScreen[str | None]):
    """Returns the note ("" when none was typed), or None when the user escapes."""

    DEFAULT_CSS = """
    ManualDoneDialog {
        align: center middle;
        background: $background 60%;
    }
    ManualDoneDialog > #manual-box {
        width: 70;
        max-width: 100%;
        height: auto;
        max-height: 100%;
        border: round $success;
        border-title-color: $text;
        background: $surface;
        padding: 0 1;
    }
    ManualDoneDialog #manual-what {
        text-style: bold;
    }
    ManualDoneDialog #manual-instructions {
        color: $text-muted;
        margin-bottom: 1;
    }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="cancel-manual", tooltip="Leave it not done")]

    def __init__(self, what: str, instructions: str = "", *, title: str = "Mark done") -> None:
        super().__init__()
        # What and the instructions come from the plan and the ledger: shown, never acted on.
        self.what, self.instructions, self.title_text = visible(what), visible_lines(instructions), visible(title)

    def compose(self) -> ComposeResult:
        with Vertical(id="manual-box") as box:
            box.border_title = self.title_text
            box.border_subtitle = "enter records it · escape cancels"
            yield Static(self.what, id="manual-what", markup=False)
            yield Static(self.instructions, id="manual-instructions", markup=False)
            yield Static("Note (optional: who answered, when):", markup=False)
            yield Input(placeholder="e.g. reached by phone at 17:40, passed on to the team", id="manual-note")

    @on(Input.Submitted, "#manual-note")
    def submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.value.strip())

    def action_cancel(self) -> None:
        self.dismiss(None)
