"""Send a communique again to a bounced recipient's corrected address, exactly once.

A member's address bounced (`ada@acme.exmaple.com`); the engineer finds the right one by hand. The
person never got the communique, so what they need is that same communique (not a reminder, and
without adding one to the plan), at the corrected address. This is the one operation behind
`relcomm send PLAN --resend-to OLD=NEW` and the receipts screen's corrected-address dialog.

It is an ordinary send through the exactly-once engine on a copy of the plan whose groups hold only
the corrected people, so the ledger's rules apply unchanged: the corrected address is a delivery of
its own (its id is derived from release, communique and address), recorded as a correction of the
original by `person_key` (the member whose address bounced), so coverage counts the person reached
and `status` shows what it corrects. Run again, a corrected address already accepted is never sent
to twice; the ledger's send lock keeps two processes from racing.

Refused, with what to do: a communique that is not email, an address with no delivery of that
communique, a delivery that did not bounce, a corrected address that is invalid (special-use names
follow the plan's `allow_special_domains`) or the same as the one that bounced, a member no longer
in the plan.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ..common.errors import UserError
from ..delivery.engine import SendEngine
from ..plan import addresses
from ..plan.model import Communique, Plan, Recipient, StakeholderGroup
from ..store.ledger import FINAL_STATES, DeliveryRecord, Ledger, delivery_id
from .status import BOUNCED, build_status, fate_of


class CorrectionError(UserError):
    """A correction that cannot be sent; `hint` says what to do."""


@dataclass(frozen=True)
class Correction:
    """One bounced delivery and where to send its communique instead."""

    original: DeliveryRecord           # the delivery that bounced
    reason: str                        # why it bounced, in the server's words
    group: StakeholderGroup
    recipient: Recipient               # the member, with the corrected address
    done_before: DeliveryRecord | None = None  # this corrected address already got it: nothing is sent

    @property
    def old_address(self) -> str:
        return self.original.recipient_key

    @property
    def new_address(self) -> str:
        return self.recipient.email or ""

    @property
    def person(self) -> str:
        """The plan member it is for: the original's person (a correction of a correction stays theirs)."""
        return self.original.person


@dataclass(frozen=True)
class CorrectionBatch:
    """What a resend will do for one communique: the corrections to send and those already sent."""

    communique: Communique
    corrections: tuple[Correction, ...]
    plan: Plan                          # narrowed to the corrected people that still need it

    @property
    def to_send(self) -> tuple[Correction, ...]:
        return tuple(c for c in self.corrections if c.done_before is None)

    @property
    def already_sent(self) -> tuple[Correction, ...]:
        return tuple(c for c in self.corrections if c.done_before is not None)


def bounced_communiques(plan: Plan, ledger: Ledger, address: str) -> list[str]:
    """The email communiques of this release whose delivery to `address` bounced, in plan order."""
    key = address.strip().lower()
    rows = [r for r in build_status(plan, ledger).rows if r.recipient_key == key and r.channel == "email"]
    return [r.communique_id for r in rows if r.standing == BOUNCED]


def prepare_corrections(plan: Plan, ledger: Ledger, communique_id: str,
                        corrected: Mapping[str, str]) -> CorrectionBatch:
    """Check `corrected` (bounced address -> corrected address) for one communique. Raises CorrectionError."""
    communique = plan.communique(communique_id)
    if communique is None:
        known = ", ".join(c.id for c in plan.communiques if c.channel == "email")
        raise CorrectionError(f"no communique {communique_id!r} in the plan", f"email communiques: {known}")
    if communique.channel != "email":
        raise CorrectionError(f"{communique_id} goes by {communique.channel}, not email: there is no address to correct",
                              "correct addresses of email communiques")
    if not corrected:
        raise CorrectionError("no address to correct", "give the bounced address and the corrected one: OLD=NEW")
    version = plan.release.version
    rows = {r.delivery_id: r for r in build_status(plan, ledger).rows if r.communique_id == communique_id}
    audience = {recipient.key: (group, recipient) for group, recipient in plan.audience(communique)}
    corrections: list[Correction] = []
    seen_new: set[str] = set()
    for old, new in corrected.items():
        old_key = old.strip().lower()
        original = ledger.delivery(delivery_id(version, communique_id, old_key))
        row = rows.get(original.id) if original is not None else None
        if original is None or row is None:
            raise CorrectionError(f"{communique_id} was not sent to {old.strip()!r}",
                                  f"give the address as `relcomm status PLAN --only {communique_id}` shows it")
        fate = fate_of(row)
        if fate.standing != BOUNCED:
            raise CorrectionError(f"{communique_id} to {old_key} did not bounce ({fate.text}): nothing to correct",
                                  "only a bounced address is sent again at a corrected one")
        person = original.person
        if person not in audience:
            raise CorrectionError(f"{person} is no longer in the audience of {communique_id} in the plan",
                                  "put them back in their group, or leave them out")
        group, member = audience[person]
        allowance = addresses.combine(group.allow_special_domains, plan.sender.allow_special_domains)
        address = addresses.valid_address(new, allowance=allowance)
        if address is None:
            special = addresses.special_suffix(new.strip()) and not addresses.allows(allowance, new.strip())
            raise CorrectionError(
                f"{new.strip()!r} is not a usable email address"
                + (f": {addresses.special_problem(new.strip())}" if special else ""),
                addresses.SPECIAL_HINT.format(domain=addresses.domain_of(new)) if special
                else "type the address as name@domain")
        new_key = address.lower()
        if new_key == old_key or new_key == person:
            raise CorrectionError(f"{address} is the address that bounced", "type the corrected address")
        if new_key in seen_new:
            raise CorrectionError(f"{address} is given twice", "give each corrected address once")
        seen_new.add(new_key)
        earlier = ledger.delivery(delivery_id(version, communique_id, new_key))
        done = earlier if earlier is not None and earlier.state in FINAL_STATES else None
        corrections.append(Correction(original, row.reason or fate.reason, group,
                                      dataclasses.replace(member, email=address), done))
    return CorrectionBatch(communique, tuple(corrections), _narrow(plan, communique, corrections))


def _narrow(plan: Plan, communique: Communique, corrections: list[Correction]) -> Plan:
    """The plan with the communique's groups holding only the corrected people still to send to."""
    members: dict[str, list[Recipient]] = {}
    for correction in corrections:
        if correction.done_before is None:
            members.setdefault(correction.group.id, []).append(correction.recipient)
    groups = tuple(dataclasses.replace(group, members=tuple(members.get(group.id, ())))
                   if group.id in communique.to else group for group in plan.groups)
    return dataclasses.replace(plan, groups=groups)


async def resend_corrected(batch: CorrectionBatch, ledger: Ledger, *, password: str | None = None,
                           on_event: Callable | None = None, who: str | None = None, host: str | None = None,
                           render: Callable | None = None, channels: Mapping | None = None):
    """Send the batch's communique to each corrected address not sent to before. Returns the
    engine's RunSummary, or None when every one was already sent; raises the engine's SendError."""
    if not batch.to_send:
        return None
    person_keys = {c.new_address.lower(): c.person for c in batch.to_send}
    engine = SendEngine(batch.plan, ledger, only=[batch.communique.id], password=password, render=render,
                        on_event=on_event, who=who, host=host, mode="follow-up", channels=channels,
                        person_keys=person_keys)
    return await engine.run()


def outcome(batch: CorrectionBatch, ledger: Ledger) -> list[tuple[Correction, DeliveryRecord | None]]:
    """Each correction with its delivery as the ledger has it now (after a resend)."""
    version = batch.plan.release.version
    return [(c, ledger.delivery(delivery_id(version, batch.communique.id, c.new_address.lower())))
            for c in batch.corrections]
