"""The manual channel: a task for a person (a phone call, a briefing, a presentation).

Nothing is sent. Delivering a manual step turns it into a task (the rendered instructions and
the person to reach, with phone and role) and reports it `awaiting`: the engine records it as
waiting for the engineer. When the engineer has done it, `confirm_manual` records it done in
the ledger (the delivery becomes "marked delivered", the confirmation a receipt) with their login,
the time and an optional note such as who answered. A re-run never re-issues a task.
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..common.errors import UserError
from ..store.ledger import FINAL_STATES, now
from .base import ChannelSettings, DeliveryJob, Intent, Outcome, Rehearsal, RenderJob, RetryPolicy, post_render, render_error_text

if TYPE_CHECKING:
    from ..store.ledger import DeliveryRecord, Ledger
    from ..plan.model import Plan

# The Outcome state a manual step reports; the engine records it as the ledger's `awaiting`.
AWAITING = "awaiting"
RECEIPT_KIND = "manual"


class ManualError(UserError):
    """A confirmation that cannot be recorded; `hint` says what to do."""


@dataclass(frozen=True)
class ManualTask:
    """What the engineer has to do, and for whom."""

    delivery_id: str
    communique_id: str
    title: str
    instructions: str
    person: str
    phone: str | None
    role: str | None
    email: str | None

    @property
    def contact(self) -> str:
        """"Dana Chief (CEO), +1 555 0100": the line an engineer dials from."""
        who = f"{self.person} ({self.role})" if self.role else self.person
        reach = self.phone or self.email
        return f"{who}, {reach}" if reach else who

    def as_text(self) -> str:
        lines = [self.title or self.communique_id, "", f"Person: {self.contact}"]
        if self.email and self.phone:
            lines.append(f"Email: {self.email}")
        lines += ["", self.instructions.strip(), "",
                  f"When done: tick it in relcomm's send screen, or run "
                  f"relcomm confirm PLAN {self.communique_id} '{self.email or self.person}' --note '...' "
                  f"(delivery {self.delivery_id})."]
        return "\n".join(lines) + "\n"


def task_for(job: DeliveryJob, render: RenderJob) -> ManualTask:
    """The task for one delivery. Raises RenderError for instructions that cannot be rendered."""
    rendered = render(job)
    person = job.recipient
    return ManualTask(
        delivery_id=job.delivery_id, communique_id=job.communique.id, title=(rendered.subject or "").strip(),
        instructions=rendered.text, person=(person.name or person.display) if person else "(nobody named)",
        phone=person.phone if person else None, role=person.role if person else None,
        email=person.email if person else None,
    )


class ManualChannel:
    """Turns each manual delivery into a task awaiting the engineer's confirmation; contacts no one."""

    name = "manual"

    def __init__(self, plan: "Plan", *, render: RenderJob | None = None, **_engine_options: object) -> None:
        self.plan = plan
        self._render = render or post_render(plan)
        # Nothing leaves the machine: no pace to keep, nothing transient to retry.
        self.settings = ChannelSettings(in_flight=4, rate=None, retry=RetryPolicy(max_attempts=1))

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def deliver(self, job: DeliveryJob, intent: Intent) -> Outcome:
        try:
            task = task_for(job, self._render)
        except Exception as error:  # RenderError: the instructions cannot be shown as written
            return Outcome("rejected", detail=f"no task: {render_error_text(error)}")
        # The intent is never committed: nothing leaves the process, so there is nothing to be in doubt about.
        return Outcome(AWAITING, reply=f"to do by hand: {task.contact}", detail=_one_line(task.instructions))  # type: ignore[arg-type]

    async def rehearse(self, job: DeliveryJob) -> Rehearsal:
        """The task as the engineer would get it."""
        return Rehearsal("txt", task_for(job, self._render).as_text().encode("utf-8"))


def _one_line(text: str, limit: int = 200) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def confirm_manual(ledger: "Ledger", delivery_id: str, who: str | None = None, note: str = "") -> "DeliveryRecord":
    """Record a manual step done: by `who` (default: this login), now, with an optional note.

    The delivery becomes "marked delivered" (final: never re-issued) and the confirmation is kept
    as a receipt, so the receipts view and the report show who did it, when, and what they noted.
    """
    record = ledger.delivery(delivery_id)
    if record is None:
        raise ManualError(f"no delivery {delivery_id} in the ledger", "run the send first, or check the id")
    if record.channel != "manual":
        raise ManualError(f"delivery {delivery_id} goes by {record.channel}, not by hand",
                          "only manual steps are confirmed this way; use mark delivered for an in-doubt message")
    if record.state in FINAL_STATES:
        raise ManualError(f"{record.recipient_display} was already confirmed: {record.reply or record.state_label}")
    who = (who or "").strip() or _login()
    note = " ".join(note.split())
    at = now()
    ledger.mark_delivered(delivery_id, who, note)
    ledger.add_receipt(f"manual:{delivery_id}:{at}", RECEIPT_KIND, delivery_id=delivery_id, action="done",
                       status=who, diagnostic=note or None, at=at,
                       raw_summary=f"done by {who} at {at}" + (f": {note}" if note else ""))
    updated = ledger.delivery(delivery_id)
    assert updated is not None
    return updated


def _login() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return str(os.getuid())
