"""Calendar invitations at send time: the UID and SEQUENCE each message carries, updates, cancels.

`for_send` runs in the send engine under the send lock, before the run's first message. For each
email communique with an invitation it makes sure the ledger has its event (a random UID at the
first send) and compares the plan with the last sequence recorded:

* nothing changed: messages carry the latest sequence;
* the time, place, link or title changed and no invitation went out yet: the record is replaced;
* it changed after invitations went out: a new sequence is recorded, and the people who got an
  older one get an update (same UID, SEQUENCE+1) as deliveries of their own,
  `<communique>#<sequence>`, so the engine's exactly-once rules hold per sequence and person:
  a sequence is never sent twice to anyone, and a run that stops resumes where it was.
* the invitation was cancelled (`relcomm cancel-invitation`), or the event's start has passed:
  the communique is skipped (said in the run's output), the rest of the plan is sent.

`cancel_plan` prepares METHOD:CANCEL the same way, for everyone invited, from the ledger alone.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from email.utils import parseaddr
from typing import Sequence

from ..compose.invitation import Stamp
from ..compose.invited import plan_event
from ..store.ledger import ACCEPTED, IN_DOUBT, MARKED_DELIVERED, DeliveryRecord, Ledger
from ..plan.invitation import describe, fingerprint
from ..plan.model import Communique, Location, Plan, Recipient, StakeholderGroup
from ..plan.schema import CommuniqueTable
from . import store

# Who has an invitation: the relay took it, the engineer marked it, or it may have gone out.
INVITED_STATES = (ACCEPTED, MARKED_DELIVERED, IN_DOUBT)


@dataclasses.dataclass(frozen=True)
class Skip:
    communique_id: str
    reason: str


def _domain(plan: Plan) -> str:
    return parseaddr(plan.sender.from_)[1].rpartition("@")[2] or "relcomm.invalid"


def _family_rows(ledger: Ledger, release: str, communique_id: str) -> list[DeliveryRecord]:
    return [d for d in ledger.deliveries(release) if store.family(d.communique_id)[0] == communique_id]


def invited(rows: Sequence[DeliveryRecord], known: list[store.Version]) -> dict[str, int]:
    """recipient key -> the highest sequence that person holds (an invitation that went out, or may have)."""
    held: dict[str, int] = {}
    for row in rows:
        if row.state not in INVITED_STATES:
            continue
        number = store.sequence_of(row, known)
        if number is not None and known and any(v.sequence == number and v.method == "REQUEST" for v in known):
            held[row.recipient_key] = max(held.get(row.recipient_key, -1), number)
    return held


def for_send(plan: Plan, ledger: Ledger, communiques: Sequence[Communique], *,
             now: dt.datetime | None = None) -> tuple[Plan, list[Communique], list[Skip]]:
    """The plan the engine sends (with stamps and update deliveries), the communiques, and what is
    skipped (a cancelled event, an event in the past, a time the plan cannot say). `now`: tests."""
    release = plan.release.version
    stamps: dict[str, Stamp] = {}
    chosen: list[Communique] = []
    extra_groups: list[StakeholderGroup] = []
    extra: list[Communique] = []
    skipped: list[Skip] = []
    for communique in communiques:
        if communique.channel != "email" or communique.spec.invitation is None:
            chosen.append(communique)
            continue
        event = plan_event(plan, communique)
        if event is None:
            skipped.append(Skip(communique.id, "not sent: its invitation's time is not usable (relcomm validate says why)"))
            continue
        if event.when.start <= (now or dt.datetime.now(dt.timezone.utc)):
            skipped.append(Skip(communique.id, f"not sent: the event started {describe(event.when)}, in the past; "
                                               "move `start` in [communiques.invitation] to send it"))
            continue
        known = store.versions(ledger, release, communique.id)
        if known and known[-1].method == "CANCEL":
            skipped.append(Skip(communique.id, "not sent: its invitation was cancelled; give the communique a new id "
                                               "to invite again"))
            continue
        printed = fingerprint(communique.spec)
        rows = _family_rows(ledger, release, communique.id)
        if not known:
            store.record(ledger, release, communique.id, "REQUEST", event, printed, uid=store.new_uid(_domain(plan)))
        elif known[-1].fingerprint != printed:
            went_out = any(row.sent_at is not None for row in rows)
            store.record(ledger, release, communique.id, "REQUEST", event, printed,
                         replace_sequence=None if went_out else known[-1].sequence)
        known = store.versions(ledger, release, communique.id)
        latest = known[-1]
        stamps[communique.id] = Stamp(latest.uid, latest.sequence)
        chosen.append(communique)
        people = _behind(plan, communique, latest.sequence, rows, known)
        if not people:
            continue
        update_id = store.sequence_id(communique.id, latest.sequence)
        previous = next((v.event.when for v in reversed(known[:-1]) if v.method == "REQUEST"), None)
        group, update = _narrowed(communique, update_id, people, f"people invited to {communique.id} before")
        extra_groups.append(group)
        extra.append(update)
        stamps[update_id] = Stamp(latest.uid, latest.sequence, parent=communique.id, previous=previous)
    skipped += _left_behind(plan, ledger, communiques)
    if not stamps:
        return plan, chosen, skipped
    widened = dataclasses.replace(plan, groups=plan.groups + tuple(extra_groups),
                                  communiques=plan.communiques + tuple(extra),
                                  invitations={**plan.invitations, **stamps})
    return widened, chosen + extra, skipped


def _behind(plan: Plan, communique: Communique, sequence: int, rows: Sequence[DeliveryRecord],
            known: list[store.Version]) -> list[Recipient]:
    """The plan's people who hold an older sequence than `sequence` (or have its update pending)."""
    if sequence == 0:
        return []
    update_id = store.sequence_id(communique.id, sequence)
    behind = {key for key, number in invited(rows, known).items() if number < sequence}
    behind |= {row.recipient_key for row in rows if row.communique_id == update_id}
    return [r for _, r in plan.audience(communique) if r.key in behind]


def updates_due(plan: Plan, ledger: Ledger, communiques: Sequence[Communique], *,
                now: dt.datetime | None = None) -> tuple[Plan, list[Communique]]:
    """What `for_send` would add, without writing anything: the update deliveries a send would make
    (app.board shows them, so a changed time is something left to send). Read only."""
    release = plan.release.version
    groups: list[StakeholderGroup] = []
    extra: list[Communique] = []
    for communique in communiques:
        if communique.channel != "email" or communique.spec.invitation is None:
            continue
        known = store.versions(ledger, release, communique.id)
        if not known or known[-1].method == "CANCEL":
            continue
        event = plan_event(plan, communique)
        if event is None or event.when.start <= (now or dt.datetime.now(dt.timezone.utc)):
            continue
        rows = _family_rows(ledger, release, communique.id)
        sequence = known[-1].sequence
        if known[-1].fingerprint != fingerprint(communique.spec) and any(row.sent_at for row in rows):
            sequence += 1  # the next send records it
        people = _behind(plan, communique, sequence, rows, known)
        if people:
            group, update = _narrowed(communique, store.sequence_id(communique.id, sequence), people,
                                      f"people invited to {communique.id} before")
            groups.append(group)
            extra.append(update)
    if not extra:
        return plan, list(communiques)
    widened = dataclasses.replace(plan, groups=plan.groups + tuple(groups), communiques=plan.communiques + tuple(extra))
    return widened, [*communiques, *extra]


def _left_behind(plan: Plan, ledger: Ledger, communiques: Sequence[Communique]) -> list[Skip]:
    """Invitations that went out but are gone from the plan: nothing is sent for them (people keep
    the event in their calendars), and the send says how to cancel them."""
    notes = []
    chosen = {c.id for c in communiques}
    for ident, known in store.released(ledger, plan.release.version).items():
        if known[-1].method == "CANCEL":
            continue
        communique = plan.communique(ident)
        if communique is not None and (communique.spec.invitation is not None or ident not in chosen):
            continue
        rows = _family_rows(ledger, plan.release.version, ident)
        if not invited(rows, known):
            continue
        what = "the communique is gone from the plan" if communique is None else "its invitation is gone from the plan"
        notes.append(Skip(ident, f"invitation not updated: {what}, and the people invited still have the event; "
                                 f"to cancel it: relcomm cancel-invitation PLAN {ident} --yes"))
    return notes


def _narrowed(communique: Communique, ident: str, people: list[Recipient], name: str,
              spec: CommuniqueTable | None = None) -> tuple[StakeholderGroup, Communique]:
    group = StakeholderGroup(id=ident, name=name, required=False, description=None,
                             members=tuple(dataclasses.replace(p, group_id=ident) for p in people),
                             members_file=None, location=communique.location)
    return group, Communique(id=ident, to=(ident,), channel="email", spec=spec or communique.spec,
                             template_file=communique.template_file, location=communique.location)


class CancelError(Exception):
    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message, self.hint = message, hint


def cancel_plan(plan: Plan, ledger: Ledger, communique_id: str) -> tuple[Plan, str, int]:
    """The plan to send METHOD:CANCEL of a communique's invitation with (recording the CANCEL
    sequence the first time), the id its deliveries go under, and how many people it reaches.

    Works from the ledger alone: the communique may be gone from the plan."""
    release = plan.release.version
    known = store.versions(ledger, release, communique_id)
    if not known:
        sent = ", ".join(sorted(store.released(ledger, release))) or "none"
        raise CancelError(f"no invitation of {communique_id!r} was sent for {plan.release.name} {release}",
                          f"invitations sent for this release: {sent}")
    rows = _family_rows(ledger, release, communique_id)
    holders = invited(rows, known)
    if known[-1].method != "CANCEL":
        if not holders:
            raise CancelError(f"nobody holds the invitation {communique_id} yet: nothing to cancel",
                              "remove [communiques.invitation] (or the communique) from the plan instead")
        last = known[-1]
        went_out = any(row.sent_at is not None for row in rows)
        store.record(ledger, release, communique_id, "CANCEL", last.event, last.fingerprint,
                     replace_sequence=None if went_out else last.sequence)
        known = store.versions(ledger, release, communique_id)
    cancel = known[-1]
    ident = store.sequence_id(communique_id, cancel.sequence)
    keys = set(holders) | {row.recipient_key for row in rows if row.communique_id == ident}
    by_key = {r.key: r for c in plan.communiques for _, r in plan.audience(c)}
    display = {row.recipient_key: row.recipient_display for row in rows}
    people = [by_key.get(key) or _person(plan, key, display.get(key, key)) for key in sorted(keys)]
    owner = plan.communique(communique_id)
    spec = CommuniqueTable.model_construct(
        id=ident, to=[ident], channel="email", subject=f"Cancelled: {cancel.event.title}",
        reply_to=owner.spec.reply_to if owner else None, read_receipt=False,
        headers={k: v for k, v in owner.spec.headers.items() if isinstance(v, str)} if owner else {})
    anchor = owner or Communique(communique_id, (), "email", spec, None, plan.release.location)
    group, communique = _narrowed(anchor, ident, people, f"people invited to {communique_id}", spec)
    communique = dataclasses.replace(communique, template_file=None)
    widened = dataclasses.replace(
        plan, groups=plan.groups + (group,), communiques=plan.communiques + (communique,),
        invitations={**plan.invitations,
                     ident: Stamp(cancel.uid, cancel.sequence, "CANCEL", parent=communique_id, event=cancel.event)})
    return widened, ident, len(people)


def _person(plan: Plan, key: str, display: str) -> Recipient:
    """Someone invited who is no longer in the plan: as the ledger names them."""
    name, address = parseaddr(display)
    return Recipient(name=name, email=address or key, group_id="", location=Location(plan.path))
