"""Reviewing on the checklist: the marks the engineer gives each group (signed off for this plan's
digest in the ledger), the note of what is left, and allowing the plan's commands.

A part of ChecklistScreen (checklist.py).
"""

from __future__ import annotations

from textual.widgets import DataTable, Static

from ...app.readiness import GATE_NOT_ALLOWED, READY, GateStatus, Readiness, Reviews, assess, reviews  # noqa: F401
from ...app.review import set_reviewed
from ...plan import Plan, consent
from ..dialogs.consent import ConsentDialog


class Review:
    """Review marks and consent of ChecklistScreen (uses its plan, ledger and group table)."""

    def action_allow_commands(self) -> None:
        plan = self.plan
        if isinstance(self.app.screen, ConsentDialog):
            return  # already asking
        dialog = ConsentDialog(plan)
        shown = dialog.review  # what the engineer sees is what is recorded, even if a file changes meanwhile

        def answered(allowed: bool | None) -> None:
            if allowed:
                try:
                    consent.allow(shown)
                except OSError as error:
                    consent.grant(shown)  # the user said yes: run them now, even if it cannot be remembered
                    self.notify(f"Consent not remembered ({error.strerror}); you will be asked again next time.",
                                severity="warning")
                self.app.consent_declined.discard(shown.digest)
            else:
                self.app.consent_declined.add(shown.digest)
            self.refresh_bindings()
            if plan is self.plan:
                self.findings, self.gate = None, None
                self.show_release()
                self.update_lock()
                self.start_checks(plan)

        self.app.push_screen(dialog, answered)

    def load_reviews(self, plan: Plan) -> set[str]:
        found = reviews(self.app.ledger, plan)
        ledger = self.app.ledger
        # Who was reviewed for an earlier version of the plan: the banner stays until each is again.
        self.reviewed_before: set[str] = {
            row["group_id"] for row in ledger.signoffs(plan.release.version)
            if row["reviewed"] and row["plan_digest"] != plan.digest} if ledger is not None else set()
        self.update_review_note(set(found.reviewed))
        return set(found.reviewed)

    def update_review_note(self, reviewed: set[str] | None = None) -> None:
        """"The plan changed since it was reviewed" stays until every group reviewed before is again."""
        reviewed = self.reviewed if reviewed is None else reviewed
        note = self.query_one("#review-note", Static)
        in_plan = {group.id for group in self.plan.groups}
        again = (getattr(self, "reviewed_before", set()) & in_plan) - reviewed
        if again:
            note.update(f"The plan changed since it was reviewed: review every group again ({len(again)} to go).")
        note.display = bool(again)
        self.stale_review = bool(again)

    def action_mark_reviewed(self) -> None:
        # Marks, never unmarks (u does): pressing on past the last row must not undo the review.
        table = self.query_one("#groups", DataTable)
        self.set_reviewed(True)
        if table.cursor_row < table.row_count - 1:
            table.move_cursor(row=table.cursor_row + 1)  # review top to bottom without extra keys

    def action_unmark_reviewed(self) -> None:
        self.set_reviewed(False)

    def set_reviewed(self, reviewed: bool) -> None:
        group_id = self.highlighted_group_id()
        ledger = self.app.ledger
        if group_id is None:
            return
        if ledger is None:
            self.notify(self.app.ledger_problem or "Review state cannot be saved", severity="error")
            return
        if (group_id in self.reviewed) == reviewed:
            return
        plan = self.plan
        set_reviewed(ledger, plan, group_id, reviewed, self.app.reviewer)
        (self.reviewed.add if reviewed else self.reviewed.discard)(group_id)
        table = self.query_one("#groups", DataTable)
        table.update_cell(group_id, "reviewed", self.group_cells(plan, group_id)[0])
        self.show_group_detail()
        self.update_review_note()  # before the lock: a stale review is one of its reasons
        self.update_lock()
