"""Follow-up: send a communique's reminder to chosen recipients, through the exactly-once engine.

The reminder is the plan's communique whose `reminder_for` names the original. The engine sends
a communique to its audience; a follow-up hands it a copy of the plan whose groups hold only the
chosen people (with a corrected address where the engineer typed one), so the engine, its ledger
rows and its exactly-once rules are the same as for any send: a reminder already accepted for a
person is never sent to them again, and a corrected address is a new delivery of its own, recorded
as that person's (the ledger's person_key), so reaching them there clears their bounce.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Collection, Mapping

from ..common.errors import UserError
from ..delivery.engine import SendEngine
from ..plan import addresses
from ..plan.model import Communique, Plan, Recipient, StakeholderGroup
from ..store.ledger import Ledger


class FollowUpError(UserError):
    """A follow-up that cannot start; `hint` says what to do."""


@dataclass(frozen=True)
class FollowUp:
    """What a follow-up will send: the reminder, to whom, and who was left out and why."""

    original: Communique
    reminder: Communique
    plan: Plan                                            # the plan narrowed to `people`
    people: tuple[tuple[StakeholderGroup, Recipient], ...]
    left_out: tuple[str, ...] = ()
    corrected: tuple[tuple[str, str], ...] = ()           # (new recipient key, the member's own key)


def reminder_of(plan: Plan, communique_id: str) -> Communique | None:
    """The plan's reminder for a communique (or the communique itself if it is a reminder)."""
    for communique in plan.communiques:
        if communique.spec.reminder_for == communique_id:
            return communique
    own = plan.communique(communique_id)
    return own if own is not None and own.spec.reminder_for else None


def valid_address(text: str) -> str | None:
    """The address, normalised, or None when it is not a usable email address (plan/addresses.py)."""
    return addresses.valid_address(text)


def prepare_follow_up(plan: Plan, communique_id: str, recipient_keys: Collection[str],
                      corrections: Mapping[str, str] | None = None) -> FollowUp:
    """Who gets the reminder of `communique_id`: each of `recipient_keys` (the original's
    recipient keys), at its corrected address when `corrections[key]` gives one."""
    original = plan.communique(communique_id)
    if original is None:
        raise FollowUpError(f"no communique {communique_id!r} in the plan", "choose rows of a communique of this plan")
    reminder = reminder_of(plan, original.spec.reminder_for or communique_id)
    if reminder is None:
        raise FollowUpError(
            f"the plan has no reminder for {communique_id}",
            f'add a communique with reminder_for = "{communique_id}" to the plan',
        )
    if reminder.channel != "email":
        raise FollowUpError(f"the reminder {reminder.id} is not an email communique", "follow-ups go by email")
    corrections = {k.strip().lower(): v for k, v in (corrections or {}).items()}
    wanted = {k.strip().lower() for k in recipient_keys}
    audience = {recipient.key: (group, recipient) for group, recipient in plan.audience(reminder)}
    people: list[tuple[StakeholderGroup, Recipient]] = []
    left_out: list[str] = []
    corrected: list[tuple[str, str]] = []
    for key in sorted(wanted):
        if key not in audience:
            left_out.append(f"{key}: not in the audience of {reminder.id}")
            continue
        group, recipient = audience[key]
        typed = corrections.get(key)
        if typed:
            address = valid_address(typed)
            if address is None:
                raise FollowUpError(f"{typed!r} is not a valid email address", "type the address as name@domain")
            recipient = dataclasses.replace(recipient, email=address)
            if recipient.key != key:
                corrected.append((recipient.key, key))
        people.append((group, recipient))
    if not people:
        raise FollowUpError("nobody to follow up", "; ".join(left_out) or "select recipients first")
    narrowed = _narrow(plan, reminder, people)
    return FollowUp(original, reminder, narrowed, tuple(people), tuple(left_out), tuple(corrected))


def _narrow(plan: Plan, reminder: Communique, people: list[tuple[StakeholderGroup, Recipient]]) -> Plan:
    members: dict[str, list[Recipient]] = {}
    for group, recipient in people:
        members.setdefault(group.id, []).append(recipient)
    groups = tuple(
        dataclasses.replace(group, members=tuple(members.get(group.id, ()))) if group.id in reminder.to else group
        for group in plan.groups
    )
    return dataclasses.replace(plan, groups=groups)


async def follow_up(plan: Plan, ledger: Ledger, communique_id: str, recipient_keys: Collection[str], *,
                    corrections: Mapping[str, str] | None = None, password: str | None = None,
                    render: Callable | None = None, on_event: Callable | None = None, who: str | None = None,
                    channels: Mapping | None = None):
    """Send the reminder of `communique_id` to the chosen recipients. Returns the engine's RunSummary;
    raises FollowUpError, or the engine's SendError (locked, stopped) with a message and hint."""

    prepared = prepare_follow_up(plan, communique_id, recipient_keys, corrections)
    engine = SendEngine(prepared.plan, ledger, only=[prepared.reminder.id], password=password, render=render,
                        on_event=on_event, who=who, mode="follow-up", channels=channels,
                        person_keys=dict(prepared.corrected))
    return await engine.run()
