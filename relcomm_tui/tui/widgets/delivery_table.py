"""The send screen's table: one row per delivery, added once and then updated in place.

The row key is the delivery's stable id, so the cursor and scroll survive 10,000 recipients. The
table keeps what each row shows (`Row`) and the counts per state, overall and per communique, so
the counts line, the bars and the detail pane need no ledger query.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Iterable

from rich.text import Text
from textual.widgets import DataTable

from ...app.board import BoardRow
from ...store.ledger import (
    ACCEPTED, AWAITING, DEFERRED, FINAL_STATES, IN_DOUBT, MARKED_DELIVERED, QUEUED, REJECTED, SENDING, STATE_LABELS,
)
from ..text import visible

COLUMNS = (("state", "State", 9), ("communique", "Communique", 16), ("recipient", "Recipient", 24),
           ("tries", "#", 2), ("reply", "Problem", 70))
# Theme variable per state: the table's state column and the counts line share them.
STATE_COLOURS = {QUEUED: "foreground-muted", SENDING: "accent", ACCEPTED: "success", DEFERRED: "warning",
                 REJECTED: "error", IN_DOUBT: "warning", MARKED_DELIVERED: "success", AWAITING: "primary"}
SHORT_LABELS = {MARKED_DELIVERED: "marked ✓", AWAITING: "to do"}


def one_line(text: str) -> str:
    """Outside text (a reply, instructions) on one line, control characters made visible."""
    return visible(" ".join(text.split()))


@dataclass
class Row:
    """What the table shows for one delivery."""

    communique_id: str
    channel: str
    recipient: str
    state: str
    reply: str
    attempts: int

    @classmethod
    def of(cls, row: BoardRow) -> "Row":
        return cls(row.communique_id, row.channel, row.recipient, row.state, row.reply, row.attempts)


class DeliveryTable(DataTable):
    """Every delivery of the send; `deliveries` and `counts` mirror what is shown."""

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.deliveries: dict[str, Row] = {}
        self.counts: Counter[str] = Counter()
        self.per_communique: dict[str, Counter[str]] = {}

    def on_mount(self) -> None:
        for key, label, width in COLUMNS:
            self.add_column(label, key=key, width=width)

    def load(self, rows: Iterable[BoardRow]) -> None:
        for row in rows:
            self.add(row.delivery_id, Row.of(row))

    def add(self, ident: str, row: Row) -> None:
        self.deliveries[ident] = row
        self.counts[row.state] += 1
        self.per_communique.setdefault(row.communique_id, Counter())[row.state] += 1
        self.add_row(*self.cells(row), key=ident)

    def cells(self, row: Row) -> tuple[Text, Text, Text, Text, Text]:
        return (self.state_cell(row.state), Text(visible(row.communique_id)), Text(visible(row.recipient)),
                self.tries_cell(row), self.reply_cell(row))

    @staticmethod
    def tries_cell(row: Row) -> Text:
        return Text(str(row.attempts) if row.attempts else "", justify="right")

    @staticmethod
    def reply_cell(row: Row) -> Text:
        # Only what went wrong belongs in the table; an accepted row's reply is in the detail pane.
        return Text("" if row.state in FINAL_STATES else one_line(row.reply))

    def state_cell(self, state: str) -> Text:
        colour = self.app.theme_variables.get(STATE_COLOURS.get(state, "foreground"), "")
        style = f"bold {colour}" if state in (REJECTED, IN_DOUBT) else colour
        if state == IN_DOUBT:
            style += " reverse"
        return Text(SHORT_LABELS.get(state, STATE_LABELS.get(state, state)), style=style.strip())

    def set(self, ident: str, state: str, reply: str, attempts: int | None = None) -> None:
        """Show a delivery's new state and reply (and attempts, when known)."""
        row = self.deliveries[ident]
        if attempts is not None:
            row.attempts = attempts
        if state != row.state:
            self.counts[row.state] -= 1
            self.counts[state] += 1
            per = self.per_communique.setdefault(row.communique_id, Counter())
            per[row.state] -= 1
            per[state] += 1
            row.state = state
            self.update_cell(ident, "state", self.state_cell(state))
        if state == SENDING:
            reply = ""  # a new attempt: the previous attempt's words no longer apply
        if reply != row.reply or state in FINAL_STATES:
            row.reply = reply
            self.update_cell(ident, "reply", self.reply_cell(row))
        self.update_cell(ident, "tries", self.tries_cell(row))

    def highlighted_id(self) -> str | None:
        if not self.row_count:
            return None
        try:
            return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except Exception:  # cursor outside the table while it is being rebuilt
            return None

    def highlighted(self) -> Row | None:
        ident = self.highlighted_id()
        return self.deliveries.get(ident) if ident else None

    def first(self, state: str) -> str | None:
        return next((ident for ident, row in self.deliveries.items() if row.state == state), None)
