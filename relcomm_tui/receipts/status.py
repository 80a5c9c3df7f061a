"""The receipt view model: per delivery, what is known about it and its one fate; per group, people
reached; per communique, deliveries reached.

Built from the ledger alone (deliveries + receipts), so the app, `relcomm receipts`, `relcomm
status` and `relcomm report` show exactly the same thing: every view asks `fate_of` (issue 11.8).

The fate of a delivery, in the user's words, decided in this order:

1. **confirmed**: a person saw it (a read receipt "displayed", a human reply) or the engineer
   confirmed a manual step; an auto-reply never confirms.
2. **settled** by the latest report that says where the message ended (on a tie, the bounce):
   *bounced* (a failed DSN, or the server refused the recipient), *delivered* (a success DSN, a
   read receipt "deleted"), *relayed (the next server gives no reports)* (a success DSN with
   `Action: relayed`: reached, not confirmed), *auto-replied* or *complained* (both prove it
   arrived).
3. **delayed since <time>: <reason>**: a delay report and nothing settled yet; a later report
   that settles the fate clears it.
4. **unverified: <why>: says <what>**: only reports that name no identifier of this ledger
   (matched by address, or by an old guessable envelope id) or are dated before the send; they
   are shown, never counted as confirmed, delivered or bounced (receipts.correlate).
5. otherwise what the ledger says of the send: accepted (email: by the relay, nothing back yet;
   other channels: the receiver took it, which counts as reached), marked delivered, in doubt,
   deferred, not sent yet, awaiting confirmation.

Standing, for coverage: confirmed; reached (includes confirmed); bounced; unknown (the rest).
Coverage per stakeholder group counts people, not deliveries (issue 11.9): each member of the
group once, reached if any of their deliveries (any communique, a follow-up at a corrected
address too) reached them; a post to a channel (webhook, publish, pager) reaches a channel, not a
person, so it only speaks for members who have no delivery of their own. Coverage per communique
counts its deliveries.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

from ..store.ledger import ACCEPTED, MARKED_DELIVERED, REJECTED, DeliveryRecord, Ledger
from ..plan.model import Plan
from .correlate import ANOTHER_SEND, BEFORE_SENT, CLOCK_ALLOWANCE, UNVERIFIED_REASONS, dated_before, is_verified

REACHED, CONFIRMED, BOUNCED, UNKNOWN = "reached", "confirmed", "bounced", "unknown"
STANDINGS = (CONFIRMED, REACHED, BOUNCED, UNKNOWN)
RELAYED_TEXT = "relayed (the next server gives no reports)"
# A calendar invitation's answer (receipts.itip): accepted confirms; tentative and declined show as
# such (the person has it: reached).
RSVP_FATES = {"accepted": ("accepted", CONFIRMED), "tentative": ("tentative", REACHED),
              "declined": ("declined", REACHED)}
# Channels whose deliveries are one per person; the others post once to a channel.
PERSONAL_CHANNELS = ("email", "manual")


def default_when(stamp: str | None) -> str:
    """Ledger UTC text as "YYYY-MM-DD HH:MM UTC" (JSON and any view without its own clock)."""
    if not stamp:
        return ""
    try:
        moment = dt.datetime.fromisoformat(stamp).astimezone(dt.timezone.utc)
    except ValueError:
        return stamp[:16]
    return moment.strftime("%Y-%m-%d %H:%M UTC")


@dataclass(frozen=True)
class Fate:
    """A delivery's one fate: `outcome` is the short label (a table cell), `text` the sentence."""

    outcome: str             # confirmed, delivered, relayed, auto-replied, complained, bounced, delayed,
                             # unverified, accepted, marked delivered, in doubt, deferred, sending, not sent,
                             # awaiting confirmation
    standing: str            # CONFIRMED, REACHED, BOUNCED or UNKNOWN
    text: str                # "delayed since 10:02: 4.4.1 connection refused"
    since: str | None = None  # when the outcome dates from (ledger UTC text)
    reason: str = ""
    unverified: str = ""     # what unverified reports say, when some arrived ("" if none)

    def describe(self) -> str:
        """The sentence, with what unverified reports said when they did not decide it."""
        if self.unverified and self.outcome != "unverified":
            return f"{self.text} · unverified report: {self.unverified}"
        return self.text

    def detail(self) -> str:
        """The sentence without the outcome it opens with ("confirmed: read 10:05" -> "read 10:05"),
        for a view that shows the outcome in the column beside it."""
        text, head = self.describe(), f"{self.outcome}: "
        return text[len(head):] if text.startswith(head) else text

    def as_dict(self) -> dict:
        return {"outcome": self.outcome, "standing": self.standing, "text": self.text, "since": self.since,
                "reason": self.reason, "unverified": self.unverified or None}


@dataclass
class RecipientReceipt:
    """One delivery and what came back for it. Times are the ledger's UTC ISO text."""

    delivery_id: str
    communique_id: str
    channel: str
    group_id: str
    recipient: str           # display form
    recipient_key: str
    state: str               # the ledger's delivery state label
    sent: str | None = None
    accepted: str | None = None
    delivered: str | None = None
    relayed: str | None = None
    displayed: str | None = None
    acknowledged: str | None = None
    bounced: str | None = None
    complained: str | None = None
    auto_replied: str | None = None
    delayed: str | None = None        # the first delay report
    delay_reason: str = ""            # what the latest delay report said
    reason: str = ""         # bounce/complaint/refusal reason: "5.1.1 User unknown"
    unverified: str = ""     # what the latest unverified report said, with why it is unverified
    last_update: str | None = None
    receipts: int = 0
    person: str = ""         # the plan member it is for (recipient_key unless a corrected address)
    first_sent: str | None = None     # when its text first went out (reports before this are not credited)
    reply: str = ""          # the server's words for the last attempt
    rsvp: str = ""           # the latest answer to a calendar invitation: accepted, tentative, declined
    rsvp_at: str | None = None
    _delay_at: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.person = self.person or self.recipient_key

    @property
    def fate(self) -> Fate:
        return fate_of(self)

    @property
    def standing(self) -> str:
        return fate_of(self).standing

    @property
    def is_reached(self) -> bool:
        return self.standing in (REACHED, CONFIRMED)

    def as_dict(self) -> dict:
        data = {name: getattr(self, name) for name in self.__dataclass_fields__ if not name.startswith("_")}
        fate = fate_of(self)
        data["standing"] = fate.standing
        data["fate"] = fate.as_dict()
        return data


def fate_of(row: RecipientReceipt, when: Callable[[str | None], str] = default_when) -> Fate:
    """The one fate of a delivery; `when` formats times for the view asking."""
    unverified = row.unverified
    if row.rsvp in RSVP_FATES:  # a person answered the invitation: their latest answer is the fate
        outcome, standing = RSVP_FATES[row.rsvp]
        text = f"confirmed: accepted {when(row.rsvp_at)}" if standing == CONFIRMED else f"{outcome} {when(row.rsvp_at)}"
        return Fate(outcome, standing, text, row.rsvp_at, "", unverified)
    if row.displayed or row.acknowledged or (row.channel == "manual" and row.state == "marked delivered"):
        if row.acknowledged and not (row.displayed and row.displayed < row.acknowledged):
            text, since = f"confirmed: replied {when(row.acknowledged)}", row.acknowledged
        elif row.displayed:
            text, since = f"confirmed: read {when(row.displayed)}", row.displayed
        else:
            text, since = "confirmed: done", row.last_update
        return Fate("confirmed", CONFIRMED, text, since, "", unverified)
    # The latest report saying where the message ended decides; on a tie the bounce.
    settled = [(stamp, rank, name) for rank, (name, stamp) in enumerate((
        ("relayed", row.relayed), ("delivered", row.delivered), ("auto-replied", row.auto_replied),
        ("complained", row.complained), ("bounced", row.bounced))) if stamp]
    if settled:
        since, _, name = max(settled)
        if name == "bounced":
            reason = row.reason or "failed"
            return Fate("bounced", BOUNCED, f"bounced: {reason}", since, reason, unverified)
        if name == "relayed":
            return Fate("relayed", REACHED, RELAYED_TEXT, since, "", unverified)
        if name == "complained":
            reason = row.reason or "reported as spam"
            return Fate("complained", REACHED, f"complained: {reason}", since, reason, unverified)
        return Fate(name, REACHED, f"{name} {when(since)}", since, "", unverified)
    if row.delayed:
        reason = row.delay_reason or "no reason given"
        return Fate("delayed", UNKNOWN, f"delayed since {when(row.delayed)}: {reason}", row.delayed, reason, unverified)
    if row.state == "marked delivered":
        return Fate("marked delivered", REACHED, row.reply or "marked delivered", row.last_update, "", unverified)
    if row.channel not in PERSONAL_CHANNELS and row.accepted:
        return Fate("accepted", REACHED, f"accepted by the {row.channel} receiver", row.accepted, "", unverified)
    if unverified:
        return Fate("unverified", UNKNOWN, f"unverified: {unverified}", None, "", unverified)
    labels = {"accepted": "accepted by the server, no report yet", "queued": "not sent yet"}
    outcome = {"queued": "not sent"}.get(row.state, row.state)
    text = labels.get(row.state, row.state)
    if row.state in ("deferred", "in doubt") and row.reply:
        text = f"{row.state}: {' '.join(row.reply.split())[:200]}"
    return Fate(outcome, UNKNOWN, text, row.last_update, "", unverified)


@dataclass(frozen=True)
class Coverage:
    """Counts for one group (people) or communique (deliveries): reached includes confirmed."""

    id: str
    name: str
    total: int
    reached: int
    confirmed: int
    bounced: int
    unknown: int

    def percent(self, count: int) -> float:
        return 100.0 * count / self.total if self.total else 0.0

    def as_dict(self) -> dict:
        return {
            "id": self.id, "name": self.name, "total": self.total,
            **{name: getattr(self, name) for name in ("reached", "confirmed", "bounced", "unknown")},
            **{f"{name}_pct": round(self.percent(getattr(self, name)), 1)
               for name in ("reached", "confirmed", "bounced", "unknown")},
        }


@dataclass
class ReceiptStatus:
    rows: list[RecipientReceipt]
    by_group: list[Coverage]
    by_communique: list[Coverage]
    unmatched: int                       # reports credited to nothing (not ours, too old, ambiguous)
    overall: Coverage = field(default=None)  # type: ignore[assignment]
    other_send: int = 0                  # reports about another send (never credited here)

    def row(self, delivery_id: str) -> RecipientReceipt | None:
        for row in self.rows:
            if row.delivery_id == delivery_id:
                return row
        return None

    def as_dict(self) -> dict:
        return {
            "recipients": [row.as_dict() for row in self.rows],
            "groups": [c.as_dict() for c in self.by_group],
            "communiques": [c.as_dict() for c in self.by_communique],
            "overall": self.overall.as_dict(),
            "unmatched_reports": self.unmatched,
            "other_send_reports": self.other_send,
        }


def _later(a: str | None, b: str | None) -> str | None:
    return max(x for x in (a, b) if x) if (a or b) else None


def _earlier(a: str | None, b: str | None) -> str | None:
    return min(x for x in (a, b) if x) if (a or b) else None


def _says(kind: str, action: str, reason: str) -> str:
    """What a report claims, in a few words (for an unverified one)."""
    if kind == "dsn":
        said = {"failed": "bounced", "delivered": "delivered", "relayed": "relayed", "expanded": "delivered",
                "delayed": "delayed"}.get(action, action or "a delivery report")
    elif kind == "mdn":
        said = "read" if action.startswith("displayed") or action in ("", "processed", "dispatched") else action
    else:
        said = {"reply": "replied", "auto-reply": "auto-replied", "complaint": "complained"}.get(kind, kind)
        if kind == "rsvp":
            said = action or "answered the invitation"
    return said + (f" ({reason})" if reason and said in ("bounced", "delayed", "complained") else "")


def apply_receipt(row: RecipientReceipt, receipt: dict) -> None:
    """Fold one ledger receipt into a row. The earliest time of each kind of evidence wins.

    A receipt not credited by this ledger's identifiers (receipts.correlate), or dated before the
    delivery was sent (a ledger written before that rule), only adds an "unverified" note."""
    kind, action, at = receipt["kind"], (receipt["action"] or "").lower(), receipt["at"]
    row.receipts += 1
    row.last_update = _later(row.last_update, at)
    reason = " ".join(p for p in (receipt["status"], receipt["diagnostic"]) if p)
    how = receipt.get("matched_by", "ledger")
    why = UNVERIFIED_REASONS.get(how or "") if not is_verified(how) else None
    if why is None and kind != "manual" and dated_before(at, row.first_sent, CLOCK_ALLOWANCE):
        why = BEFORE_SENT
    if why is not None:
        row.unverified = f"{why}: says {_says(kind, action, reason)}"
        return
    if kind == "dsn":
        if action == "failed":
            row.bounced = _earlier(row.bounced, at)
            row.reason = reason or "failed"
        elif action in ("delivered", "expanded"):
            row.delivered = _earlier(row.delivered, at)
        elif action == "relayed":
            row.relayed = _earlier(row.relayed, at)
        elif action == "delayed":
            row.delayed = _earlier(row.delayed, at)
            if row._delay_at is None or (at or "") >= row._delay_at:
                row._delay_at = at or ""
                row.delay_reason = reason
    elif kind == "mdn":
        if action.startswith("displayed") or action in ("", "processed", "dispatched"):
            row.displayed = _earlier(row.displayed, at)
        elif action in ("deleted", "denied"):
            # Deleted unread still proves the message arrived.
            row.delivered = _earlier(row.delivered, at)
    elif kind == "reply":
        row.acknowledged = _earlier(row.acknowledged, at)
    elif kind == "rsvp":
        if action in RSVP_FATES and (row.rsvp_at is None or (at or "") >= row.rsvp_at):
            row.rsvp, row.rsvp_at = action, at or ""
    elif kind == "auto-reply":
        row.auto_replied = _earlier(row.auto_replied, at)
    elif kind == "complaint":
        row.complained = _earlier(row.complained, at)
        row.reason = reason or "reported as spam"


def build_status(plan: Plan, ledger: Ledger, *, release_version: str | None = None) -> ReceiptStatus:
    """The receipts view of a plan's release, in plan order of communiques then recipients."""
    version = release_version or plan.release.version
    uncredited = ledger.uncredited_reports()
    other_send = uncredited.pop(ANOTHER_SEND, 0)
    return status_from(plan, ledger.deliveries(version), ledger.release_receipts(version),
                       sum(uncredited.values()), other_send=other_send)


def row_for(d: DeliveryRecord) -> RecipientReceipt:
    """A delivery as the ledger has it, before any receipt is folded in."""
    sent = d.updated if d.attempts and d.state != "queued" else None
    row = RecipientReceipt(
        delivery_id=d.id, communique_id=d.communique_id, channel=d.channel, group_id=d.group_id or "",
        recipient=d.recipient_display, recipient_key=d.recipient_key, state=d.state_label,
        sent=d.accepted_at or sent, accepted=d.accepted_at if d.state in (ACCEPTED, MARKED_DELIVERED) else None,
        last_update=d.updated, person=d.person, first_sent=d.sent_at, reply=d.reply or "",
    )
    if d.state == REJECTED:
        row.bounced = d.updated
        row.reason = d.reply or "refused by the server"
    return row


def status_from(plan: Plan, deliveries: Sequence[DeliveryRecord], receipts: Iterable[dict],
                unmatched: int = 0, *, other_send: int = 0) -> ReceiptStatus:
    """`unmatched`: reports in the ledger credited to no delivery (source messages, not rows),
    `other_send` of them about another send."""
    order = {c.id: i for i, c in enumerate(plan.communiques)}
    rows: dict[str, RecipientReceipt] = {}
    for d in sorted(deliveries, key=lambda d: order.get(d.communique_id, len(order))):
        rows[d.id] = row_for(d)
    for receipt in receipts:
        row = rows.get(receipt["delivery_id"]) if receipt["delivery_id"] else None
        if row is not None:
            apply_receipt(row, receipt)
    all_rows = list(rows.values())
    by_group = []
    for group in plan.groups:
        cover = group_coverage(plan, group.id, group.name, [m.key for m in group.members], all_rows)
        if cover is not None:
            by_group.append(cover)
    by_communique = []
    for communique in plan.communiques:
        members = [r for r in all_rows if r.communique_id == communique.id]
        if members:
            by_communique.append(coverage(communique.id, communique.spec.description or communique.id, members))
    return ReceiptStatus(all_rows, by_group, by_communique, unmatched,
                         coverage("all", "All deliveries", all_rows), other_send)


def coverage(ident: str, name: str, rows: Sequence[RecipientReceipt]) -> Coverage:
    """Counts of deliveries (one per row)."""
    return _counted(ident, name, [r.standing for r in rows])


def person_standing(rows: Sequence[RecipientReceipt]) -> str:
    """A person's standing from all their deliveries: the best of them (reached by any)."""
    standings = {r.standing for r in rows}
    for standing in (CONFIRMED, REACHED, BOUNCED):
        if standing in standings:
            return standing
    return UNKNOWN


def group_coverage(plan: Plan, ident: str, name: str, member_keys: Sequence[str],
                   rows: Sequence[RecipientReceipt]) -> Coverage | None:
    """People of one group: its members in the plan plus anyone the ledger sent to for it (a
    member since removed); None when nothing was ever sent to the group."""
    posts_to = {c.id for c in plan.communiques if ident in c.to}
    members = set(member_keys)
    related = [r for r in rows if r.group_id == ident or
               (r.channel in PERSONAL_CHANNELS and r.person in members) or
               (r.channel not in PERSONAL_CHANNELS and r.communique_id in posts_to)]
    if not related:
        return None
    personal: dict[str, list[RecipientReceipt]] = {}
    for row in rows:
        if row.channel in PERSONAL_CHANNELS:
            personal.setdefault(row.person, []).append(row)
    people = list(dict.fromkeys([*member_keys, *(r.person for r in related if r.channel in PERSONAL_CHANNELS)]))
    posts = [r for r in related if r.channel not in PERSONAL_CHANNELS]
    standings = []
    for person in people:
        own = personal.get(person)
        standings.append(person_standing(own) if own else person_standing(posts))
    return _counted(ident, name, standings)


def _counted(ident: str, name: str, standings: list[str]) -> Coverage:
    confirmed = standings.count(CONFIRMED)
    return Coverage(ident, name, len(standings), standings.count(REACHED) + confirmed, confirmed,
                    standings.count(BOUNCED), standings.count(UNKNOWN))


# Filters the screen and the CLI share: each takes a row and answers whether it shows.
def is_unconfirmed(row: RecipientReceipt) -> bool:
    return row.standing != CONFIRMED


def is_bounced(row: RecipientReceipt) -> bool:
    return row.standing == BOUNCED
