"""Confirm a follow-up: which reminder goes to whom (and at which corrected address) before it is sent.

"No" has the focus: a tired Enter never sends.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from ..text import plain


class ConfirmFollowUpDialog(ModalScreen[bool]):
    DEFAULT_CSS = """
    ConfirmFollowUpDialog { align: center middle; background: $background 60%; }
    ConfirmFollowUpDialog > #follow-box {
        width: 72; max-width: 100%; height: auto; max-height: 100%;
        border: round $warning; background: $surface; padding: 0 1;
    }
    ConfirmFollowUpDialog #follow-question { text-style: bold; margin-bottom: 1; }
    ConfirmFollowUpDialog #follow-people { height: auto; max-height: 10; color: $text-muted; }
    ConfirmFollowUpDialog #follow-buttons { height: auto; align-horizontal: right; }
    ConfirmFollowUpDialog Button { margin-left: 1; }
    """
    BINDINGS = [
        Binding("escape,n", "answer(False)", "Don't send", id="follow-no", tooltip="Send nothing"),
        Binding("y", "answer(True)", "Send", id="follow-yes", tooltip="Send the reminder to these recipients"),
    ]

    def __init__(self, reminder_id: str, subject: str, people: list[str], left_out: list[str]) -> None:
        super().__init__()
        self.reminder_id, self.subject, self.people, self.left_out = reminder_id, subject, people, left_out

    def compose(self) -> ComposeResult:
        count = len(self.people)
        with Vertical(id="follow-box") as box:
            box.border_title = "Follow up"
            yield Static(plain(f"Send {self.reminder_id} to {count} recipient{'' if count == 1 else 's'}?"),
                         id="follow-question")
            if self.subject:
                yield Static(plain(f"Subject: {self.subject}"), id="follow-subject")
            with VerticalScroll(id="follow-people"):
                yield Static(Content("\n").join(plain(line) for line in
                                                 self.people + [f"left out: {note}" for note in self.left_out]))
            with Horizontal(id="follow-buttons"):
                yield Button("Send (y)", id="yes", variant="warning")
                yield Button("Don't send (n)", id="no", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
