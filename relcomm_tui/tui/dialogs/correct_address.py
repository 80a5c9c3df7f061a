"""Ask for a corrected address for a recipient whose message bounced (receipts follow-up): the same
communique is then sent there (receipts/corrections.py).

Returns the address typed (checked as an email address), or None to leave that recipient out.
"""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from ...plan.addresses import valid_address
from ..text import plain


class CorrectAddressDialog(ModalScreen[str | None]):
    DEFAULT_CSS = """
    CorrectAddressDialog { align: center middle; background: $background 60%; }
    CorrectAddressDialog > #correct-box {
        width: 70; max-width: 100%; height: auto; border: round $warning; background: $surface; padding: 0 1;
    }
    CorrectAddressDialog #correct-reason { color: $text-muted; }
    CorrectAddressDialog #correct-problem { color: $error; height: auto; }
    """
    BINDINGS = [Binding("escape", "skip", "Leave out", id="correct-skip", tooltip="Do not follow up this recipient")]

    def __init__(self, recipient: str, address: str, reason: str, *, allowance: bool | tuple[str, ...] = False) -> None:
        super().__init__()
        self.recipient, self.address, self.reason = recipient, address, reason
        self.allowance = allowance  # the plan's allow_special_domains for this person (corp.local)

    def compose(self) -> ComposeResult:
        with Vertical(id="correct-box") as box:
            box.border_title = "Bounced: corrected address?"
            yield Static(plain(self.recipient), id="correct-who")
            yield Static(plain(self.reason or "the message bounced"), id="correct-reason")
            yield Input(value=self.address, placeholder="name@example.com", id="correct-input")
            yield Static("", id="correct-problem")
            yield Static("enter: use this address · escape: leave this recipient out", id="correct-keys")

    @on(Input.Submitted)
    def submitted(self, event: Input.Submitted) -> None:
        address = valid_address(event.value, allowance=self.allowance)
        if address is None:
            self.query_one("#correct-problem", Static).update(plain(f"{event.value!r} is not a valid email address"))
            return
        if address.lower() == self.address.strip().lower():
            self.query_one("#correct-problem", Static).update(plain("that is the address that bounced: type the right one"))
            return
        self.dismiss(address)

    def action_skip(self) -> None:
        self.dismiss(None)
