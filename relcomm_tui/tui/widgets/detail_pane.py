"""The send screen's detail pane: the highlighted delivery in full, and what can be done about it
(an in-doubt row says what in doubt means, an open manual step shows its instructions).
"""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Static

from ...common.text import plural
from ...compose.shown import text_for
from ...plan.model import Plan
from ...store.ledger import FINAL_STATES, IN_DOUBT, STATE_LABELS
from ..text import visible
from .delivery_table import STATE_COLOURS, Row, one_line

IN_DOUBT_EXPLAINED = ("in doubt: the connection ended after the whole message was sent, before the server "
                      "answered, so it may have arrived")


class DetailPane(Static):
    """Shows one delivery (`show`); keeps each manual step's instructions once rendered."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._instructions: dict[tuple[str, str, str], str] = {}

    def show(self, plan: Plan, row: Row | None, message_id: str | None = None) -> None:
        """Show `row` (None: nothing highlighted); `message_id` is the ledger's, for an email."""
        if row is None:
            self.update("")
            return
        label = STATE_LABELS.get(row.state, row.state)
        lines = [Content.assemble((visible(row.recipient), "bold"), visible(f"  {row.communique_id} ({row.channel})  "),
                                  (label, f"bold ${STATE_COLOURS.get(row.state, 'foreground')}"),
                                  f"  {plural(row.attempts, 'attempt')}")]
        if row.state == IN_DOUBT:
            lines.append(Content.styled(IN_DOUBT_EXPLAINED + ". d resends (same Message-ID), m marks it delivered.",
                                        "$warning"))
        if row.channel == "manual" and row.state not in FINAL_STATES:
            lines.append(Content(f"Manual step: {one_line(self.instructions(plan, row))}  (enter ticks it done)"))
        if row.reply:
            lines.append(Content.assemble(("Reply: ", "bold"), one_line(row.reply)))
        if message_id and row.channel == "email":
            lines.append(Content.assemble(("Message-ID: ", "bold"), visible(message_id)))
        self.update(Content("\n").join(lines))

    def instructions(self, plan: Plan, row: Row) -> str:
        """A manual step's instructions as rendered for its person (never the template source)."""
        communique = plan.communique(row.communique_id)
        if communique is None:
            return ""
        # Rendering runs the template: once per person and plan, not on every highlight.
        key = (plan.digest, row.communique_id, row.recipient_key)
        if key not in self._instructions:
            self._instructions[key] = text_for(plan, communique, row.recipient_key)
        return self._instructions[key]
