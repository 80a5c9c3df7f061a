"""Signing off stakeholder groups: the checklist's space key and `relcomm review` record the same thing.

A sign-off names the group, who (login@host), when, and the plan's digest (the plan file and every
file it uses): `readiness` only counts sign-offs for the digest of the plan being sent, so an edit
after review needs a new one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..common.errors import UserError
from ..store.ledger import Ledger, now, who_am_i
from ..plan.locate import close_match
from ..plan.model import Plan


class UnknownGroup(UserError):
    """A group named on the command line that the plan does not have."""


@dataclass(frozen=True)
class SignOff:
    group_id: str
    name: str
    who: str
    at: str
    plan_digest: str

    def as_dict(self) -> dict:
        return {"group": self.group_id, "name": self.name, "who": self.who, "at": self.at,
                "plan_digest": self.plan_digest}


def reviewer() -> str:
    login, host = who_am_i()
    return f"{login}@{host}"


def groups_to_review(plan: Plan, named: Sequence[str]) -> list[str]:
    """The groups named (each must be in the plan), or every required group when none is named."""
    if not named:
        return [group.id for group in plan.groups if group.required]
    known = [group.id for group in plan.groups]
    chosen: list[str] = []
    for name in named:
        if name not in known:
            close = close_match(name, known)
            where = f"{plan.path}: [[stakeholders]]"
            hint = (f'did you mean "{close}"? ' if close else "") + f"the plan's groups: {', '.join(known)}"
            raise UnknownGroup(f"{where} has no group {name!r}", hint)
        if name not in chosen:
            chosen.append(name)
    return chosen


def set_reviewed(ledger: Ledger, plan: Plan, group_id: str, reviewed: bool = True, who: str | None = None) -> SignOff:
    """Record (or withdraw) one group's sign-off for this plan's digest."""
    who = who or reviewer()
    ledger.set_reviewed(plan.release.version, plan.digest, group_id, reviewed, who)
    group = plan.group(group_id)
    return SignOff(group_id, group.name if group else group_id, who, now(), plan.digest)


def sign_off(ledger: Ledger, plan: Plan, group_ids: Sequence[str], who: str | None = None) -> list[SignOff]:
    return [set_reviewed(ledger, plan, group_id, True, who) for group_id in group_ids]
