"""The typed confirmation before anything is sent: the user types the release version."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from ...common.terminal_text import visible
from ...common.text import plural


class ConfirmSendDialog(ModalScreen[bool]):
    """True only when the version was typed exactly and Enter pressed; escape is False."""

    CSS_PATH = "confirm_send.tcss"
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="cancel-send", tooltip="Send nothing")]

    def __init__(self, release_name: str, version: str, recipients: int = 0, communiques: int = 0,
                 *, deliveries_left: int | None = None, question: str | None = None, notes: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.release_name, self.version = visible(release_name), version
        self.shown_version = visible(version)  # typed against `version`, shown as this
        self.recipients, self.communiques = recipients, communiques
        self.deliveries_left = deliveries_left
        # `question`: counted by app.board, as the send screen counts (deliveries, not people).
        self.question = visible(question) if question else None
        self.notes = tuple(visible(note) for note in notes if note)

    def compose(self) -> ComposeResult:
        if self.question is not None:
            question = self.question
        elif self.deliveries_left is None:
            question = (f"Send {self.release_name} {self.shown_version} to {plural(self.recipients, 'recipient')} "
                        f"over {plural(self.communiques, 'communique')}?")
        else:
            left = self.deliveries_left
            question = (f"Continue sending {self.release_name} {self.shown_version}: "
                        f"{left} {'delivery' if left == 1 else 'deliveries'} not sent yet?")
        with Vertical(id="confirm-box") as box:
            box.border_title = "Send"
            box.border_subtitle = "enter sends · escape cancels"
            yield Static(question, id="confirm-question", markup=False)
            yield Static("Messages go out as soon as you confirm. Anything already accepted is never sent again.",
                         id="confirm-detail", markup=False)
            for note in self.notes:
                yield Static(note, classes="confirm-note", markup=False)
            yield Static(f"Type the version ({self.shown_version}) to confirm:", id="confirm-prompt", markup=False)
            yield Input(placeholder=f"type {self.shown_version} here", id="confirm-version", select_on_focus=False)
            yield Static("", id="confirm-error", markup=False)

    @on(Input.Submitted, "#confirm-version")
    def submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if event.value == self.version:
            self.dismiss(True)
            return
        typed = event.value
        error = self.query_one("#confirm-error", Static)
        if not typed:
            error.update(f"Type {self.shown_version} and press enter, or escape to cancel.")
        else:
            error.update(visible(f"{typed!r} is not {self.shown_version}: type the version exactly."))

    @on(Input.Changed, "#confirm-version")
    def changed(self) -> None:
        self.query_one("#confirm-error", Static).update("")

    def action_cancel(self) -> None:
        self.dismiss(False)
