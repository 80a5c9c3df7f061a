"""Following up from the receipts screen: select recipients, resend a bounced communique to a corrected
address, or send the plan's reminder to those who have not confirmed.

A part of ReceiptsScreen (receipts.py), kept apart so the screen's own module reads as its layout.
"""

from __future__ import annotations

import asyncio

from textual import work
from textual.widgets import DataTable

from ...app import credentials
from ...compose.shown import subject_for
from ...delivery.engine import SendError
from ...plan import addresses
from ...receipts.corrections import CorrectionError, prepare_corrections, resend_corrected
from ...receipts.followup import FollowUpError, follow_up, prepare_follow_up, reminder_of
from ...receipts.status import (
    BOUNCED,
    CONFIRMED,
    RecipientReceipt,
)
from ..dialogs.confirm_follow_up import ConfirmFollowUpDialog
from ..dialogs.correct_address import CorrectAddressDialog
from ..dialogs.password import PasswordDialog

# What fits 80 columns first (the fate's reason starts there and grows with the terminal); the
# rest is a scroll to the right, and enter opens the whole story of the highlighted row.


class FollowUp:
    """The follow-up keys and flows of ReceiptsScreen (uses its plan, status, selected rows and app)."""

    def action_toggle_selected(self) -> None:
        ident = self.highlighted_id()
        if ident is None or self.status is None:
            return
        (self.selected.discard if ident in self.selected else self.selected.add)(ident)
        row = self.status.row(ident)
        if row is not None:
            self.fill_table()
        self.show_filter()
        table = self.query_one("#receipts", DataTable)
        if table.cursor_row < table.row_count - 1:
            table.move_cursor(row=table.cursor_row + 1)

    def follow_up_rows(self) -> list[RecipientReceipt]:
        """The selected rows, or, with nothing selected, every unconfirmed row shown."""
        if self.status is None:
            return []
        if self.selected:
            return [r for r in self.status.rows if r.delivery_id in self.selected]
        return [r for r in self.visible_rows() if r.standing != CONFIRMED]

    def action_follow_up(self) -> None:
        rows = self.follow_up_rows()
        if not rows:
            self.notify("Select recipients first (space), or show some unconfirmed ones.", title="Follow up",
                        severity="warning")
            return
        communiques = sorted({r.communique_id for r in rows})
        if len(communiques) > 1:
            self.notify(f"The rows are of {len(communiques)} communiques ({', '.join(communiques)}); "
                        "follow up one at a time: press c to show one communique.", title="Follow up",
                        severity="warning", timeout=8)
            return
        # A bounced person never got the communique: it goes to them again, at a corrected address
        # (receipts/corrections.py). The others, who got it, get the plan's reminder, if it has one.
        bounced = [r for r in rows if r.standing == BOUNCED and r.channel == "email"]
        others = [r for r in rows if r not in bounced]
        if others and reminder_of(self.plan, communiques[0]) is None:
            if not bounced:
                self.notify(f'The plan has no reminder for {communiques[0]}: add a communique with '
                            f'reminder_for = "{communiques[0]}".', title="Follow up", severity="warning", timeout=8)
                return
            self.notify(f"Only the {len(bounced)} bounced are sent {communiques[0]} again; the plan has no reminder "
                        "for the others.", title="Follow up", timeout=8)
            others = []
        self.follow_up_flow(communiques[0], bounced, others)

    async def _send_options(self) -> dict | None:
        """Keywords for a send from this screen (the SMTP password resolved), or None when it cannot be had."""
        options = dict(self.send_options)
        if "password" not in options and credentials.needs_password(self.plan):
            # The same policy as the send screen: the plan's reference, else ask (masked).
            async def ask(question: credentials.Ask) -> str | None:
                return await self.app.push_screen_wait(PasswordDialog(question.account, question.why))

            try:
                options["password"] = await credentials.smtp_password_async(self.plan, ask)
            except credentials.NoPassword as error:
                self.notify(f"{error.message}. {error.hint}", title="SMTP password", severity="warning", timeout=10)
                return None
        return options

    @work(exclusive=True, exit_on_error=False, group="receipts-follow-up")
    async def follow_up_flow(self, communique_id: str, bounced: list[RecipientReceipt],
                             others: list[RecipientReceipt]) -> None:
        sent = False
        if bounced:
            sent = await self.resend_corrected_flow(communique_id, bounced)
        if others:
            sent = await self.reminder_flow(communique_id, others) or sent
        if sent:
            self.selected.clear()
            self.show_filter()
            self.start_refresh()

    async def resend_corrected_flow(self, communique_id: str, rows: list[RecipientReceipt]) -> bool:
        """Ask each bounced row's corrected address, confirm, send the same communique there once."""
        corrections: dict[str, str] = {}
        for row in rows:
            group = self.plan.group(row.group_id)
            allowance = addresses.combine(group.allow_special_domains if group is not None else False,
                                          self.plan.sender.allow_special_domains)
            address = await self.app.push_screen_wait(
                CorrectAddressDialog(row.recipient, row.recipient_key, row.reason, allowance=allowance))
            if address is not None:
                corrections[row.recipient_key] = address
        if not corrections:
            self.notify("Nobody left to send again.", title="Follow up")
            return False
        try:
            batch = await asyncio.to_thread(prepare_corrections, self.plan, self.app.ledger, communique_id,
                                            corrections)
        except CorrectionError as error:
            self.notify(f"{error.message}. {error.hint}", title="Corrected address", severity="error", timeout=10)
            return False
        people = [f"{c.recipient.display} (bounced at {c.old_address})" for c in batch.to_send]
        already = [f"{c.new_address}: already sent there, not again" for c in batch.already_sent]
        if not people:
            self.notify("; ".join(already), title="Follow up")
            return False
        first = batch.to_send[0]
        subject = self.subject_of(batch.communique, first.group, first.recipient)
        if not await self.app.push_screen_wait(ConfirmFollowUpDialog(batch.communique.id, subject, people, already)):
            return False
        options = await self._send_options()
        if options is None:
            return False
        try:
            summary = await resend_corrected(batch, self.app.ledger, who=getattr(self.app, "reviewer", None),
                                             **options)
        except SendError as error:
            self.notify(f"{error.message}. {error.hint}", title="Not sent", severity="error", timeout=10)
            return False
        per = summary.per_communique.get(batch.communique.id, {}) if summary is not None else {}
        self.notify(f"{batch.communique.id} sent again to {len(batch.to_send)} corrected address(es); "
                    f"{per.get('rejected', 0)} refused, {per.get('deferred', 0)} deferred in all",
                    title="Sent at corrected addresses")
        return True

    def subject_of(self, communique, group=None, recipient=None) -> str:
        """The subject as rendered for a recipient (never template source)."""
        return subject_for(self.plan, communique, recipient, group)

    async def reminder_flow(self, communique_id: str, rows: list[RecipientReceipt]) -> bool:
        keys = [row.recipient_key for row in rows]
        try:
            prepared = prepare_follow_up(self.plan, communique_id, keys)
        except FollowUpError as error:
            self.notify(f"{error.message}. {error.hint}", title="Follow up", severity="error", timeout=10)
            return False
        people = [r.display for _, r in prepared.people]
        if not await self.app.push_screen_wait(ConfirmFollowUpDialog(
                prepared.reminder.id, self.subject_of(prepared.reminder, *prepared.people[0]), people,
                list(prepared.left_out))):
            return False
        options = await self._send_options()
        if options is None:
            return False
        try:
            summary = await follow_up(self.plan, self.app.ledger, communique_id, keys,
                                      who=getattr(self.app, "reviewer", None), **options)
        except SendError as error:
            self.notify(f"{error.message}. {error.hint}", title="Follow up not sent", severity="error", timeout=10)
            return False
        per = summary.per_communique.get(prepared.reminder.id, {})
        self.notify(f"{prepared.reminder.id}: {per.get('accepted', 0)} accepted, {per.get('rejected', 0)} refused, "
                    f"{per.get('deferred', 0)} deferred", title="Follow-up sent")
        return True
