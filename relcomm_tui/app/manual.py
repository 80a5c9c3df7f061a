"""Ticking a manual step done: the send screen's enter key and `relcomm confirm` make the same ledger call.

Ticking needs no review: it records what a person did (called the CEO), it sends nothing. A step
ticked before the send issued it (the engineer made the call first) is recorded in the ledger
first, so the send never issues it again. The ledger write syncs to disk: the app calls `tick`
from a worker thread, never from an event handler.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..channels.manual import confirm_manual
from ..delivery.engine import delivery_audience, sender_domain
from ..common.errors import UserError
from ..store.ledger import FINAL_STATES, DeliveryIntent, DeliveryRecord, Ledger, delivery_id
from ..plan.locate import close_match
from ..plan.model import Plan

__all__ = ["Step", "StepNotFound", "find_step", "open_steps", "tick"]


class StepNotFound(UserError):
    """The communique or the person named is not a manual step of this plan."""


@dataclass(frozen=True)
class Step:
    """One manual delivery: for whom, and whether it is done."""

    delivery_id: str
    communique_id: str
    recipient: str
    recipient_key: str
    group_id: str
    done: bool


def steps(plan: Plan, ledger: Ledger | None, communique_id: str) -> list[Step]:
    """Every manual step of a communique, as the plan names them (and the ledger has them)."""
    communique = plan.communique(communique_id)
    if communique is None:
        known = [c.id for c in plan.communiques if c.channel == "manual"] or [c.id for c in plan.communiques]
        close = close_match(communique_id, [c.id for c in plan.communiques])
        raise StepNotFound(f"{plan.path}: [[communiques]] has no communique {communique_id!r}",
                           (f'did you mean "{close}"? ' if close else "") + f"manual steps: {', '.join(known)}")
    if communique.channel != "manual":
        manual = [c.id for c in plan.communiques if c.channel == "manual"]
        raise StepNotFound(f"{communique_id} goes by {communique.channel}, not by hand: there is nothing to tick",
                           f"manual steps in this plan: {', '.join(manual)}" if manual else "this plan has no manual step")
    version = plan.release.version
    found: list[Step] = []
    for group, recipient in delivery_audience(plan, communique):
        ident = delivery_id(version, communique_id, recipient.key)
        record = ledger.delivery(ident) if ledger is not None else None
        found.append(Step(ident, communique_id, recipient.display, recipient.key, group.id,
                          record is not None and record.state in FINAL_STATES))
    return found


def open_steps(plan: Plan, ledger: Ledger | None, communique_id: str) -> list[Step]:
    return [step for step in steps(plan, ledger, communique_id) if not step.done]


def find_step(plan: Plan, ledger: Ledger | None, communique_id: str, recipient: str | None) -> Step:
    """The step named by a communique and, when it has several people, a person (address or name)."""
    every = steps(plan, ledger, communique_id)
    if recipient:
        wanted = recipient.strip().lower()
        matching = [s for s in every if wanted in (s.recipient_key, s.recipient.lower())
                    or wanted == s.recipient.split("<")[0].strip().strip('"').lower()]
        if not matching:
            people = ", ".join(s.recipient for s in every)
            raise StepNotFound(f"{communique_id} has no step for {recipient!r}", f"its people: {people}")
        return matching[0]
    waiting = [s for s in every if not s.done]
    if len(every) == 1:
        return every[0]
    if len(waiting) == 1:
        return waiting[0]
    if not waiting:
        raise StepNotFound(f"every step of {communique_id} is already done", "relcomm status PLAN shows who did each")
    raise StepNotFound(f"{communique_id} has {len(waiting)} steps waiting: name the person",
                       "for example: " + ", ".join(repr(s.recipient_key) for s in waiting[:3]))


def tick(plan: Plan, ledger: Ledger, ident: str, who: str, note: str = "") -> DeliveryRecord:
    """Record a manual step done (blocking: the ledger syncs). Raises channels.manual.ManualError
    (a UserError) when it cannot be: already done, not a manual delivery."""

    if ledger.delivery(ident) is None:
        # The engine creates deliveries when it runs; a step ticked before that is recorded now.
        for communique in plan.communiques:
            if communique.channel != "manual":
                continue
            for group, recipient in delivery_audience(plan, communique):
                if delivery_id(plan.release.version, communique.id, recipient.key) == ident:
                    ledger.ensure_deliveries(plan.release.version, [DeliveryIntent(
                        communique.id, recipient.key, recipient.display, group.id, "manual")],
                        domain=sender_domain(plan))
    return confirm_manual(ledger, ident, who, note)
