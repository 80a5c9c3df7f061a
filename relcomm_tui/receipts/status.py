"""The receipt view model: per delivery, what is known about it; per group and communique, coverage.

Built from the ledger alone (deliveries + receipts), so the app, `relcomm receipts` and
`relcomm report` show exactly the same thing. Definitions, in the user's words:

* reached: the message arrived (a delivered DSN, a read receipt, a reply, an auto-reply, a
  complaint), or a non-email channel accepted it (webhook answered, page published), or the
  engineer marked it delivered;
* confirmed: a person saw it (read receipt "displayed", a human reply) or the engineer
  confirmed a manual step; an auto-reply never confirms;
* bounced: a failed DSN or the server refused the recipient (and no later evidence it arrived);
* unknown: everything else (sent and silent, in doubt, not sent yet).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

from ..ledger import ACCEPTED, MARKED_DELIVERED, REJECTED, DeliveryRecord, Ledger
from ..plan.model import Plan

REACHED, CONFIRMED, BOUNCED, UNKNOWN = "reached", "confirmed", "bounced", "unknown"
STANDINGS = (CONFIRMED, REACHED, BOUNCED, UNKNOWN)


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
    displayed: str | None = None
    acknowledged: str | None = None
    bounced: str | None = None
    complained: str | None = None
    auto_replied: str | None = None
    delayed: str | None = None
    reason: str = ""         # bounce/complaint/refusal reason: "5.1.1 User unknown"
    last_update: str | None = None
    receipts: int = 0

    @property
    def standing(self) -> str:
        if self.displayed or self.acknowledged or (self.channel == "manual" and self.state == "marked delivered"):
            return CONFIRMED
        if self.bounced and not (self.delivered and self.delivered > self.bounced):
            return BOUNCED
        if self.delivered or self.complained or self.auto_replied or self.state == "marked delivered":
            return REACHED
        if self.channel != "email" and self.accepted:
            return REACHED
        return UNKNOWN

    @property
    def is_reached(self) -> bool:
        return self.standing in (REACHED, CONFIRMED)

    def as_dict(self) -> dict:
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        data["standing"] = self.standing
        return data


@dataclass(frozen=True)
class Coverage:
    """Counts for one group or communique: reached includes confirmed."""

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
    unmatched: int
    overall: Coverage = field(default=None)  # type: ignore[assignment]

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
        }


def _later(a: str | None, b: str | None) -> str | None:
    return max(x for x in (a, b) if x) if (a or b) else None


def _earlier(a: str | None, b: str | None) -> str | None:
    return min(x for x in (a, b) if x) if (a or b) else None


def apply_receipt(row: RecipientReceipt, receipt: dict) -> None:
    """Fold one ledger receipt into a row. The earliest time of each kind of evidence wins."""
    kind, action, at = receipt["kind"], (receipt["action"] or "").lower(), receipt["at"]
    row.receipts += 1
    row.last_update = _later(row.last_update, at)
    reason = " ".join(p for p in (receipt["status"], receipt["diagnostic"]) if p)
    if kind == "dsn":
        if action == "failed":
            row.bounced = _earlier(row.bounced, at)
            row.reason = reason or "failed"
        elif action in ("delivered", "relayed", "expanded"):
            row.delivered = _earlier(row.delivered, at)
        elif action == "delayed":
            row.delayed = _earlier(row.delayed, at)
    elif kind == "mdn":
        if action.startswith("displayed") or action in ("", "processed", "dispatched"):
            row.displayed = _earlier(row.displayed, at)
        elif action in ("deleted", "denied"):
            # Deleted unread still proves the message arrived.
            row.delivered = _earlier(row.delivered, at)
    elif kind == "reply":
        row.acknowledged = _earlier(row.acknowledged, at)
    elif kind == "auto-reply":
        row.auto_replied = _earlier(row.auto_replied, at)
    elif kind == "complaint":
        row.complained = _earlier(row.complained, at)
        row.reason = reason or "reported as spam"


def build_status(plan: Plan, ledger: Ledger, *, release_version: str | None = None) -> ReceiptStatus:
    """The receipts view of a plan's release, in plan order of communiques then recipients."""
    version = release_version or plan.release.version
    unmatched = len({key.rsplit("|", 1)[0] for key in ledger.unmatched_receipt_keys()})
    return status_from(plan, ledger.deliveries(version), ledger.release_receipts(version), unmatched)


def status_from(plan: Plan, deliveries: Sequence[DeliveryRecord], receipts: Iterable[dict],
                unmatched: int = 0) -> ReceiptStatus:
    """`unmatched`: reports in the ledger that matched no delivery (source messages, not rows)."""
    order = {c.id: i for i, c in enumerate(plan.communiques)}
    rows: dict[str, RecipientReceipt] = {}
    for d in sorted(deliveries, key=lambda d: order.get(d.communique_id, len(order))):
        sent = d.updated if d.attempts and d.state != "queued" else None
        row = RecipientReceipt(
            delivery_id=d.id, communique_id=d.communique_id, channel=d.channel, group_id=d.group_id or "",
            recipient=d.recipient_display, recipient_key=d.recipient_key, state=d.state_label,
            sent=d.accepted_at or sent, accepted=d.accepted_at if d.state in (ACCEPTED, MARKED_DELIVERED) else None,
            last_update=d.updated,
        )
        if d.state == REJECTED:
            row.bounced = d.updated
            row.reason = d.reply or "refused by the server"
        rows[d.id] = row
    for receipt in receipts:
        row = rows.get(receipt["delivery_id"]) if receipt["delivery_id"] else None
        if row is not None:
            apply_receipt(row, receipt)
    all_rows = list(rows.values())
    by_group = []
    for group in plan.groups:
        members = [r for r in all_rows if r.group_id == group.id]
        if members:
            by_group.append(coverage(group.id, group.name, members))
    by_communique = []
    for communique in plan.communiques:
        members = [r for r in all_rows if r.communique_id == communique.id]
        if members:
            by_communique.append(coverage(communique.id, communique.spec.description or communique.id, members))
    return ReceiptStatus(all_rows, by_group, by_communique, unmatched,
                         coverage("all", "All deliveries", all_rows))


def coverage(ident: str, name: str, rows: Sequence[RecipientReceipt]) -> Coverage:
    standings = [r.standing for r in rows]
    confirmed = standings.count(CONFIRMED)
    return Coverage(ident, name, len(rows), standings.count(REACHED) + confirmed, confirmed,
                    standings.count(BOUNCED), standings.count(UNKNOWN))


# Filters the screen and the CLI share: each takes a row and answers whether it shows.
def is_unconfirmed(row: RecipientReceipt) -> bool:
    return row.standing != CONFIRMED


def is_bounced(row: RecipientReceipt) -> bool:
    return row.standing == BOUNCED
