"""The send screen's table: one row per delivery, added once and then updated in place.

The row key is the delivery's stable id, so the cursor and scroll survive 10,000 recipients. The
table keeps what each row shows (`Row`) and the counts per state, overall and per communique, so
the counts line, the bars and the detail pane need no ledger query.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Mapping

from rich.text import Text

from ...app.board import BoardRow
from ...plan.model import Plan
from ...store.ledger import (
    ACCEPTED, AWAITING, DEFERRED, FINAL_STATES, IN_DOUBT, MARKED_DELIVERED, QUEUED, REJECTED, SENDING, STATE_LABELS,
)
from ..text import visible
from .tables import Cell, Fit, ListTable, add_fit_columns, apply_widths

if TYPE_CHECKING:
    from ...delivery.engine import DeliveryChanged

# The recipient and communique grow towards their longest text with the terminal; the problem takes the rest.
COLUMNS = [Fit("state", "State", 9), Fit("communique", "Communique", 12, weight=2),
           Fit("recipient", "Recipient", 20, weight=3), Fit("tries", "#", 2), Fit("reply", "Problem", 12, flex=True)]
FIRST_ROWS = 60    # rows in the table when it is loaded (a screenful at 120x40); the rest follow in slices
FILL_SLICE = 250   # rows added per slice between frames
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
    recipient_key: str = ""  # the member it is for: a manual step's instructions are rendered for them

    @classmethod
    def of(cls, row: BoardRow) -> "Row":
        person = row.record.person if row.record is not None else row.recipient_key
        return cls(row.communique_id, row.channel, row.recipient, row.state, row.reply, row.attempts, person)


class DeliveryTable(ListTable):
    """Every delivery of the send; `deliveries` and `counts` mirror what is shown (the table itself
    may hold fewer rows: while it fills after opening, or when `/` narrows it)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.deliveries: dict[str, Row] = {}
        self.counts: Counter[str] = Counter()
        self.per_communique: dict[str, Counter[str]] = {}
        self.wants: dict[str, int] = {}
        self.to_add: list[str] = []         # rows not in the table yet (it fills in slices after opening)
        self.filtering = False              # `/` narrowed the table
        self.cursor_to: str | None = None   # where the cursor goes once that row is in the table

    def on_mount(self) -> None:
        add_fit_columns(self, COLUMNS)

    def fit(self) -> None:
        apply_widths(self, COLUMNS, self.wants)

    def on_resize(self) -> None:
        self.call_after_refresh(self.fit)

    def load(self, rows: Iterable[BoardRow]) -> None:
        """Every row counted now; the first screenful shown now, the rest in slices between frames,
        so the screen opens at once with 10,000 recipients and a key is never kept waiting."""
        idents = []
        for row in rows:
            self.register(row.delivery_id, Row.of(row))
            idents.append(row.delivery_id)
        for ident in idents[:FIRST_ROWS]:
            self.add_row(*self.cells(self.deliveries[ident]), key=ident)
        self.to_add = idents[FIRST_ROWS:]
        if self.to_add:
            self.call_after_refresh(self.set_timer, 0.01, self.fill_more)  # the first screenful is drawn first
        self.fit()

    def fill_more(self) -> None:
        if self.filtering:
            self.to_add = []  # the filter rebuilt the table from every row
            return
        batch, self.to_add = self.to_add[:FILL_SLICE], self.to_add[FILL_SLICE:]
        for ident in batch:
            if ident not in self.rows:
                self.add_row(*self.cells(self.deliveries[ident]), key=ident)
        if self.to_add:
            self.set_timer(0.01, self.fill_more)
        else:
            self.move_to(self.cursor_to)

    def move_to(self, ident: str | None) -> None:
        """Put the cursor on a delivery (once it is in the table)."""
        self.cursor_to = ident
        if ident is not None and ident in self.rows:
            self.move_cursor(row=self.get_row_index(ident))
            self.cursor_to = None

    def register(self, ident: str, row: Row) -> None:
        self.deliveries[ident] = row
        if len(row.recipient) > self.wants.get("recipient", 0):
            self.wants["recipient"] = len(row.recipient)
        if len(row.communique_id) > self.wants.get("communique", 0):
            self.wants["communique"] = len(row.communique_id)
        self.counts[row.state] += 1
        self.per_communique.setdefault(row.communique_id, Counter())[row.state] += 1

    def add(self, ident: str, row: Row) -> None:
        self.register(ident, row)
        self.add_row(*self.cells(row), key=ident)

    def apply(self, changes: Mapping[str, DeliveryChanged], plan: Plan) -> None:
        """Each delivery's latest state from the engine; one the table has no row for yet gets one."""
        for ident, event in changes.items():
            row = self.deliveries.get(ident)
            if row is None:
                communique = plan.communique(event.communique_id)
                self.add(ident, Row(event.communique_id, communique.channel if communique else "",
                                    event.recipient, event.state, event.detail, 1 if event.state == SENDING else 0))
            else:
                self.set(ident, event.state, event.detail or row.reply)

    def narrow(self, matches) -> None:
        """Show only the deliveries `matches(row)` accepts (None: all of them again)."""
        keep = self.highlighted_id()
        self.clear()
        self.filtering = matches is not None
        self.to_add = []
        for ident, row in self.deliveries.items():
            if matches is None or matches(row):
                self.add_row(*self.cells(row), key=ident)
        if keep is not None and keep in self.rows:
            self.move_cursor(row=self.get_row_index(keep))
        self.border_subtitle = f"{self.row_count} of {len(self.deliveries)}" if self.filtering else ""

    def cells(self, row: Row) -> tuple[Text, Text, Text, Text, Text]:
        return (self.state_cell(row.state), Cell(visible(row.communique_id)), Cell(visible(row.recipient)),
                self.tries_cell(row), self.reply_cell(row))

    @staticmethod
    def tries_cell(row: Row) -> Text:
        return Cell(str(row.attempts) if row.attempts else "", justify="right")

    @staticmethod
    def reply_cell(row: Row) -> Text:
        # Only what went wrong belongs in the table; an accepted row's reply is in the detail pane.
        return Cell("" if row.state in FINAL_STATES else one_line(row.reply))

    def state_cell(self, state: str) -> Text:
        colour = self.app.theme_variables.get(STATE_COLOURS.get(state, "foreground"), "")
        style = f"bold {colour}" if state in (REJECTED, IN_DOUBT) else colour
        if state == IN_DOUBT:
            style += " reverse"
        return Cell(SHORT_LABELS.get(state, STATE_LABELS.get(state, state)), style=style.strip())

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
        # Filtered out, or not added yet while the table fills: counted now, drawn when added.
        shown = not (self.filtering or self.to_add) or ident in self.rows
        if shown:
            self.update_cell_lazily(ident, "state", self.state_cell(state))
        if state == SENDING:
            reply = ""  # a new attempt: the previous attempt's words no longer apply
        if reply != row.reply or state in FINAL_STATES:
            row.reply = reply
            if shown:
                self.update_cell_lazily(ident, "reply", self.reply_cell(row))
        if shown:
            self.update_cell_lazily(ident, "tries", self.tries_cell(row))

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
