"""Where each delivery of a plan's release stands: one row per delivery, one count everywhere.

The send screen, `relcomm status`, the confirm dialog and the checklist's summary after a send all
read `board()`, so they count the same thing: deliveries, not people. A delivery is one message
to one person (email, manual steps) or one post to a channel (webhook, publish, pager, whatever
the number of people the groups hold), as the engine makes them (`delivery_audience`).

Rows, in plan order of communiques:
1. every delivery the send covers (all communiques but follow-ups, or those named by `only`), as
   the ledger has it, else `queued` (not recorded yet: the engine records it when it runs);
2. then every other delivery the ledger holds for the release: people since removed from the
   plan, follow-ups sent from the receipts screen, communiques since removed (history).

A follow-up (`reminder_for`) is not part of a send: it is sent from receipts, to those who have
not confirmed. The confirm dialog says so, which is why a plan of 7 communiques may send 6.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Sequence

from ..delivery.engine import delivery_audience, select_communiques
from ..store.ledger import (
    AWAITING, DEFERRED, FINAL_STATES, IN_DOUBT, MARKED_DELIVERED, QUEUED, REJECTED, STATE_LABELS, DeliveryRecord,
    Ledger, RunRecord, delivery_id,
)
from ..common.text import plural
from ..plan.model import Plan
from ..receipts.status import BOUNCED, CONFIRMED, REACHED, UNKNOWN, Fate, apply_receipt, fate_of, row_for

NOT_SENT = Fate("not sent", UNKNOWN, "not sent yet")
# Finished for this run: nothing more happens to these without the user asking.
DONE_STATES = frozenset({*FINAL_STATES, REJECTED, IN_DOUBT})


def deliveries(count: int, adjective: str = "") -> str:
    return f"{count} {adjective + ' ' if adjective else ''}{'delivery' if count == 1 else 'deliveries'}"


@dataclass
class BoardRow:
    """One delivery: what the ledger says of it (or `queued` when not recorded yet) and its fate."""

    delivery_id: str
    communique_id: str
    channel: str
    recipient: str            # display form
    recipient_key: str
    group_id: str
    state: str                # the ledger's state
    reply: str
    attempts: int
    in_send: bool             # part of the send (False: a follow-up, or history the plan no longer names)
    record: DeliveryRecord | None = None
    fate: Fate = NOT_SENT

    @property
    def state_label(self) -> str:
        return STATE_LABELS.get(self.state, self.state)

    def as_dict(self) -> dict:
        """The ledger's record (None fields when not recorded yet), its label and its fate."""
        if self.record is not None:
            data = self.record.as_dict()
        else:
            data = {name: None for name in DeliveryRecord.__slots__} | {
                "id": self.delivery_id, "communique_id": self.communique_id, "recipient_key": self.recipient_key,
                "recipient_display": self.recipient, "group_id": self.group_id, "channel": self.channel,
                "state": self.state, "attempts": self.attempts, "state_label": self.state_label}
        return data | {"recorded": self.record is not None, "in_send": self.in_send, "fate": self.fate.as_dict()}


@dataclass
class Board:
    """Every delivery of a plan's release, and the counts every view shows."""

    release: str
    rows: list[BoardRow]
    send_ids: tuple[str, ...]           # the communiques the send covers, in plan order
    runs: list[RunRecord] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.rows)

    @property
    def communique_ids(self) -> list[str]:
        """Every communique with a row (or in the send), in plan order then history."""
        return list(dict.fromkeys([*self.send_ids, *(row.communique_id for row in self.rows)]))

    def counts(self) -> Counter[str]:
        return Counter(row.state for row in self.rows)

    def per_communique(self) -> dict[str, Counter[str]]:
        per: dict[str, Counter[str]] = {ident: Counter() for ident in self.communique_ids}
        for row in self.rows:
            per[row.communique_id][row.state] += 1
        return per

    def left(self, *, retry_failed: bool = False, resend_in_doubt: bool = False) -> int:
        """Deliveries a send would (try to) send now: not sent yet or deferred, and with the
        flags the rejected or in-doubt ones too. Follow-ups and history are not the send's."""
        states = {QUEUED, DEFERRED} | ({REJECTED} if retry_failed else set()) | ({IN_DOUBT} if resend_in_doubt else set())
        return sum(row.in_send and row.state in states for row in self.rows)

    @property
    def recorded(self) -> int:
        return sum(row.record is not None for row in self.rows)

    @property
    def started(self) -> bool:
        """Anything of this release was ever sent (or issued: a manual step counts)."""
        return any(row.record is not None and (row.attempts or row.state != QUEUED) for row in self.rows)

    def standing(self) -> Counter[str]:
        return Counter(row.fate.standing for row in self.rows)

    @property
    def manual_waiting(self) -> int:
        return sum(row.state == AWAITING for row in self.rows)

    def last_sent(self) -> str | None:
        """When the latest send (or follow-up) run started, ledger UTC text."""
        starts = [run.started for run in self.runs if run.mode in ("send", "follow-up")]
        return max(starts) if starts else None

    def summary(self, when: Callable[[str], str] | None = None) -> str:
        """One line after a send: "Sent 12-02 17:40 · 35/37 accepted · 30 reached · 2 bounced · 2 manual steps waiting".

        Accepted: the server or receiver took it (or it was marked delivered); reached: a report,
        a read receipt, a reply or a ticked step says it arrived (receipts.status.fate_of)."""
        when = when or local_time
        standing = self.standing()
        counts = self.counts()
        accepted = sum(counts[state] for state in FINAL_STATES)
        reached = standing[REACHED] + standing[CONFIRMED]
        last = self.last_sent()
        parts = [f"Sent {when(last)}" if last else "Sent", f"{accepted}/{self.total} accepted"]
        if reached:
            parts.append(f"{reached} reached")
        if standing[CONFIRMED]:
            parts.append(f"{standing[CONFIRMED]} confirmed")
        if standing[BOUNCED]:
            parts.append(f"{standing[BOUNCED]} bounced")
        if counts[IN_DOUBT]:
            parts.append(f"{counts[IN_DOUBT]} in doubt")
        if counts[DEFERRED]:
            parts.append(f"{counts[DEFERRED]} deferred")
        if self.manual_waiting:
            parts.append(f"{plural(self.manual_waiting, 'manual step')} waiting")
        unsent = sum(row.state == QUEUED for row in self.rows)
        if unsent:
            parts.append(f"{unsent} not sent yet")
        return " · ".join(parts)

    def send_question(self, name: str, version: str) -> str:
        """The confirm dialog's question: what a first send will do, counted as the send screen counts."""
        return f"Send {name} {version}: {deliveries(self.left())} over {plural(len(self.send_ids), 'communique')}?"


def follow_up_note(plan: Plan, send_ids: Sequence[str]) -> str:
    """Why some communiques of the plan are not in this send (follow-ups go from receipts)."""
    later = [c.id for c in plan.communiques if c.id not in send_ids and c.spec.reminder_for is not None]
    if not later:
        return ""
    return (f"{plural(len(later), 'follow-up')} ({', '.join(later)}) not included: "
            "follow-ups go from the receipts screen to those who have not confirmed.")


def local_time(stamp: str) -> str:
    """Ledger UTC text as local "MM-DD HH:MM" (the engineer's clock)."""
    try:
        return dt.datetime.fromisoformat(stamp).astimezone().strftime("%m-%d %H:%M")
    except ValueError:
        return stamp[:16]


def board(plan: Plan, ledger: Ledger | None, only: Sequence[str] | None = None) -> Board:
    """Where every delivery of the plan's release stands. `only`: just these communiques (the send
    covers exactly them); raises delivery.SendError naming the plan's communiques for an unknown id.

    Reads the ledger (deliveries, receipts, runs) without writing: `ledger` None means nothing
    was ever recorded (a plan never sent, or `status` before a ledger exists).
    """
    release = plan.release.version
    in_send = select_communiques(plan, only)
    if ledger is not None:
        # A calendar invitation whose time changed after it went out: its updates are left to send.
        from ..invitations.send import updates_due

        plan, in_send = updates_due(plan, ledger, in_send)
        only = [*only, *(c.id for c in in_send if c.id not in only)] if only else None
    send_ids = tuple(c.id for c in in_send)
    records = ledger.deliveries(release) if ledger is not None else []
    fates: dict[str, Fate] = {}
    if records:
        assert ledger is not None
        # The fold status_from makes (receipts.status), without the coverage no row needs.
        folded = {record.id: row_for(record) for record in records}
        for receipt in ledger.release_receipts(release):
            row = folded.get(receipt["delivery_id"]) if receipt["delivery_id"] else None
            if row is not None:
                apply_receipt(row, receipt)
        fates = {ident: fate_of(row) for ident, row in folded.items()}
    by_id = {record.id: record for record in records}
    by_communique: dict[str, list[DeliveryRecord]] = {}
    for record in records:
        by_communique.setdefault(record.communique_id, []).append(record)

    def recorded(record: DeliveryRecord, in_send: bool) -> BoardRow:
        return BoardRow(record.id, record.communique_id, record.channel, record.recipient_display,
                        record.recipient_key, record.group_id or "", record.state, record.reply or "",
                        record.attempts, in_send, record, fates.get(record.id, NOT_SENT))

    rows: list[BoardRow] = []
    shown: set[str] = set()
    wanted = set(only) if only else None
    for communique in plan.communiques:
        if wanted is not None and communique.id not in wanted:
            continue
        if communique.id in send_ids:
            # One row per person (email, manual), one per post (webhook, publish, pager): the engine's ids.
            for group, recipient in delivery_audience(plan, communique):
                ident = delivery_id(release, communique.id, recipient.key)
                record = by_id.get(ident)
                shown.add(ident)
                if record is not None:
                    rows.append(recorded(record, True))
                else:
                    rows.append(BoardRow(ident, communique.id, communique.channel, recipient.display,
                                         recipient.key, group.id, QUEUED, "", 0, True))
        for record in by_communique.get(communique.id, ()):
            if record.id not in shown:  # people no longer in the plan, or a follow-up's deliveries
                shown.add(record.id)
                rows.append(recorded(record, False))
    if wanted is None:
        for record in records:  # communiques no longer in the plan
            if record.id not in shown:
                rows.append(recorded(record, False))
    runs = ledger.runs(release) if ledger is not None and records else []
    return Board(release, rows, send_ids, runs)


def done_count(counts: Counter[str]) -> int:
    return sum(counts[state] for state in DONE_STATES)


__all__ = ["Board", "BoardRow", "DONE_STATES", "MARKED_DELIVERED", "board", "deliveries", "done_count",
           "follow_up_note", "local_time", "plural"]
