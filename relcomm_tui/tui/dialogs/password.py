"""The masked password prompt, used when the plan's secret reference cannot be resolved.

The typed password is handed back to the caller (kept in memory for this session) and never
written anywhere.
"""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from ...common.terminal_text import visible, visible_lines


class PasswordDialog(ModalScreen[str | None]):
    """Returns the password, or None when the user escapes."""

    DEFAULT_CSS = """
    PasswordDialog {
        align: center middle;
        background: $background 60%;
    }
    PasswordDialog > #password-box {
        width: 66;
        max-width: 100%;
        height: auto;
        max-height: 100%;
        border: round $primary;
        border-title-color: $text;
        background: $surface;
        padding: 0 1;
    }
    PasswordDialog #password-why {
        color: $text-muted;
        margin-bottom: 1;
    }
    PasswordDialog #password-error {
        height: 1;
        color: $error;
    }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="cancel-password", tooltip="Do not send")]

    def __init__(self, account: str, why: str = "") -> None:
        super().__init__()
        self.account, self.why = visible(account), visible_lines(why)  # from the plan and a secret's error

    def compose(self) -> ComposeResult:
        with Vertical(id="password-box") as box:
            box.border_title = "SMTP password"
            box.border_subtitle = "enter continues · escape cancels"
            if self.why:
                yield Static(self.why, id="password-why", markup=False)
            yield Static(f"Password for {self.account} (kept in memory for this session, never saved):",
                         markup=False)
            yield Input(password=True, id="password")
            yield Static("", id="password-error", markup=False)

    @on(Input.Submitted, "#password")
    def submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if not event.value:
            self.query_one("#password-error", Static).update("Type the password, or escape to cancel.")
            return
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)
