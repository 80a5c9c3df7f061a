"""A yes/no question as a dialog: the send screen's "cancel?", "resend in doubt?" and "quit?".

The safe answer has the focus, so a tired Enter never does the irreversible thing.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from ...common.terminal_text import visible, visible_lines


class AskDialog(ModalScreen[bool]):
    """Returns True for the `yes` answer, False for `no` (also escape)."""

    DEFAULT_CSS = """
    AskDialog {
        align: center middle;
        background: $background 60%;
    }
    AskDialog > #ask-box {
        width: 64;
        max-width: 100%;
        height: auto;
        max-height: 100%;
        border: round $warning;
        border-title-color: $text;
        background: $surface;
        padding: 0 1;
    }
    AskDialog #ask-question {
        text-style: bold;
        margin-bottom: 1;
    }
    AskDialog #ask-detail {
        color: $text-muted;
        margin-bottom: 1;
    }
    AskDialog #ask-buttons {
        height: auto;
        align-horizontal: right;
    }
    AskDialog Button {
        margin-left: 1;
    }
    """
    BINDINGS = [
        Binding("escape,n", "answer(False)", "No", id="ask-no", tooltip="Keep things as they are"),
        Binding("y", "answer(True)", "Yes", id="ask-yes", tooltip="Go ahead"),
    ]

    def __init__(self, question: str, detail: str = "", *, yes: str = "Yes", no: str = "No",
                 title: str = "Are you sure?") -> None:
        super().__init__()
        # Questions quote plans and servers (a command, a recipient): shown, never acted on.
        self.question, self.detail = visible_lines(question), visible_lines(detail)
        self.yes_label, self.no_label, self.title_text = yes, no, visible(title)

    def compose(self) -> ComposeResult:
        with Vertical(id="ask-box") as box:
            box.border_title = self.title_text
            box.border_subtitle = "y yes · n / escape no"
            yield Static(self.question, id="ask-question", markup=False)
            if self.detail:
                yield Static(self.detail, id="ask-detail", markup=False)
            with Horizontal(id="ask-buttons"):
                yield Button(self.yes_label, id="yes", variant="error")
                yield Button(self.no_label, id="no", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
