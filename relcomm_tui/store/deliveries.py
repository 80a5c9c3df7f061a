"""The ledger's deliveries: created once per (release, communique, recipient), claimed before their
side effect, settled after it. The transitions here are the exactly-once rule: a delivery is
claimed only from queued or deferred, and a claimed one that never got its outcome is in doubt.

A part of Ledger (store/ledger.py), which holds the connection and the write discipline.
"""

from __future__ import annotations

import sqlite3
from typing import Callable, Iterable, Sequence

from .records import (
    _DELIVERY_COLUMNS,
    DeliveryIntent,
    DeliveryRecord,
    delivery_id,
    new_envelope_id,
    new_message_id,
)
from .states import (
    ACCEPTED,
    DEFERRED,
    IN_DOUBT,
    MARKED_DELIVERED,
    QUEUED,
    REJECTED,
    SENDING,
    STATE_LABELS,
    STATES,
    ClaimRefused,
    now,
)

# A send may start only from these states (one conditional UPDATE claims a delivery): never
# from `sending` (another run has it), a final state, `awaiting`, `rejected` or `in doubt`
# (those go back to `queued` only through `requeue`, the engineer's explicit choice).
CLAIMABLE_STATES = (QUEUED, DEFERRED)


class DeliveryBook:
    """Deliveries and their states: a part of Ledger, using its `_db`, `_reading()` and `_write()`."""

    def ensure_deliveries(self, release_version: str, intents: Iterable[DeliveryIntent], *, domain: str) -> int:
        """Create a `queued` delivery for each intent not yet known, with its own random envelope
        id and Message-ID (made here, once: a resend reuses them; nobody can compute them).

        Existing deliveries are left alone: their state and ids are history.
        Returns how many were created.
        """
        stamp = now()

        def work(db: sqlite3.Connection) -> int:
            before = db.total_changes
            db.executemany(
                "INSERT INTO deliveries (id, release_version, communique_id, recipient_key, recipient_display, "
                "group_id, channel, state, attempts, message_id, envelope_id, created, updated, person_key) "
                "VALUES (?,?,?,?,?,?,?,?,0,?,?,?,?,?) ON CONFLICT DO NOTHING",
                (
                    (
                        delivery_id(release_version, i.communique_id, i.recipient_key),
                        release_version, i.communique_id, (key := i.recipient_key.strip().lower()),
                        i.recipient_display, i.group_id, i.channel, QUEUED, new_message_id(domain),
                        new_envelope_id(), stamp, stamp,
                        person if (person := (i.person_key or "").strip().lower()) and person != key else None,
                    )
                    for i in intents
                ),
            )
            return db.total_changes - before

        return self._write(work)  # type: ignore[return-value]

    def deliveries(self, release_version: str, communique_id: str | None = None) -> list[DeliveryRecord]:
        query = f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE release_version=?"
        params: tuple = (release_version,)
        if communique_id is not None:
            query += " AND communique_id=?"
            params += (communique_id,)
        with self._reading():
            rows = self._db.execute(query + " ORDER BY rowid", params).fetchall()
        return [DeliveryRecord(*row) for row in rows]

    def delivery(self, ident: str) -> DeliveryRecord | None:
        with self._reading():
            row = self._db.execute(f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE id=?", (ident,)).fetchone()
        return DeliveryRecord(*row) if row else None

    def pending(self, release_version: str, communique_id: str,
                states: Iterable[str]) -> list[tuple[str, str, str, int, str, str]]:
        """(id, recipient_key, message_id, attempts, state, envelope_id) of a communique's deliveries in `states`.

        Small tuples, not records: a 100,000-recipient send keeps only these in memory.
        """
        wanted = tuple(states)
        marks = ",".join("?" * len(wanted))
        with self._reading():
            return self._db.execute(
                f"SELECT id, recipient_key, message_id, attempts, state, envelope_id FROM deliveries WHERE release_version=? "
                f"AND communique_id=? AND state IN ({marks}) ORDER BY rowid",
                (release_version, communique_id, *wanted),
            ).fetchall()

    def counts(self, release_version: str, communique_id: str | None = None) -> dict[str, int]:
        query = "SELECT state, COUNT(*) FROM deliveries WHERE release_version=?"
        params: tuple = (release_version,)
        if communique_id is not None:
            query += " AND communique_id=?"
            params += (communique_id,)
        with self._reading():
            rows = self._db.execute(query + " GROUP BY state", params).fetchall()
        counts = {state: 0 for state in STATES}
        counts.update(dict(rows))
        return counts

    @staticmethod
    def sending_work(ident: str, run_id: int | None) -> Callable[[sqlite3.Connection], object]:
        """Claim a delivery for this run: one conditional UPDATE, so of two runs (or two claims in
        one) only one can move it to `sending`; the other gets ClaimRefused and must not send."""
        stamp = now()

        def work(db: sqlite3.Connection) -> object:
            cursor = db.execute(
                "UPDATE deliveries SET state=?, attempts=attempts+1, updated=?, run_id=COALESCE(?, run_id), "
                f"sent_at=COALESCE(sent_at, ?) WHERE id=? AND state IN ({','.join('?' * len(CLAIMABLE_STATES))})",
                (SENDING, stamp, run_id, stamp, ident, *CLAIMABLE_STATES),
            )
            if cursor.rowcount != 1:
                row = db.execute("SELECT state, run_id FROM deliveries WHERE id=?", (ident,)).fetchone()
                if row is None:
                    raise ClaimRefused(f"delivery {ident} is not in the ledger; not sending it")
                if row[0] == SENDING:
                    raise ClaimRefused(f"delivery {ident} is already being sent (by run #{row[1]}); not sending it again")
                raise ClaimRefused(f"delivery {ident} is {STATE_LABELS.get(row[0], row[0])}, not queued or deferred; "
                                   "not sending it")
            return None

        return work

    @staticmethod
    def outcome_work(ident: str, state: str, reply: str | None,
                     attempted: bool = False) -> Callable[[sqlite3.Connection], object]:
        """`attempted`: an attempt that ended before any `sending` row (e.g. refused at RCPT,
        before the message text) still counts in `attempts`."""
        if state not in STATES or state in (SENDING,):
            raise ValueError(f"not an outcome: {state!r}")
        stamp = now()
        accepted_at = stamp if state == ACCEPTED else None
        # An attempt refused before its `sending` row still went to the server: it counts as sent.
        return lambda db: db.execute(
            "UPDATE deliveries SET state=?, reply=?, updated=?, accepted_at=COALESCE(?, accepted_at), "
            "attempts=attempts+?, sent_at=CASE WHEN ? THEN COALESCE(sent_at, ?) ELSE sent_at END WHERE id=?",
            (state, reply, stamp, accepted_at, int(attempted), int(attempted), stamp, ident),
        )

    def mark_sending(self, idents: Sequence[str], run_id: int | None = None) -> None:
        """Record the intent to send, durably, before any byte goes out."""
        self.apply([self.sending_work(ident, run_id) for ident in idents])

    def mark_outcome(self, ident: str, state: str, reply: str | None = None) -> None:
        self.apply([self.outcome_work(ident, state, reply)])

    def mark_delivered(self, ident: str, who: str, note: str = "") -> None:
        """The engineer says an in-doubt (or any unsent) delivery did arrive; never sent again."""
        self.mark_outcome(ident, MARKED_DELIVERED, f"marked delivered by {who}" + (f": {note}" if note else ""))

    def requeue(self, idents: Sequence[str]) -> int:
        """Put deferred/rejected/in-doubt deliveries back in the queue (retry failed, resend in doubt).

        The Message-ID is kept, so a mail client can drop a duplicate of an in-doubt message.
        """
        stamp = now()

        def work(db: sqlite3.Connection) -> int:
            before = db.total_changes
            db.executemany(
                "UPDATE deliveries SET state=?, updated=? WHERE id=? AND state IN (?, ?, ?)",
                ((QUEUED, stamp, ident, DEFERRED, REJECTED, IN_DOUBT) for ident in idents),
            )
            return db.total_changes - before

        return self._write(work)  # type: ignore[return-value]

    def recover_in_doubt(self) -> int:
        """Deliveries left in `sending` by a process that died become `in doubt`. Returns how many.
        Only for the holder of the send lock (the engine); `open` checks the lock itself."""
        return self._write(self._recover_work)  # type: ignore[return-value]

    @staticmethod
    def _recover_work(db: sqlite3.Connection) -> int:
        return db.execute(
            "UPDATE deliveries SET state=?, updated=?, reply=COALESCE(reply || ' | ', '') || ? WHERE state=?",
            (IN_DOUBT, now(), "the sending process stopped before the server's reply was recorded", SENDING),
        ).rowcount

    def delivery_by_message_id(self, message_id: str) -> DeliveryRecord | None:
        with self._reading():
            row = self._db.execute(f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE message_id=?",
                                   (message_id,)).fetchone()
        return DeliveryRecord(*row) if row else None

    def delivery_by_envelope_id(self, envelope_id: str) -> DeliveryRecord | None:
        with self._reading():
            row = self._db.execute(f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE envelope_id=?",
                                   (envelope_id,)).fetchone()
        return DeliveryRecord(*row) if row else None

    def deliveries_to(self, recipient_key: str) -> list[DeliveryRecord]:
        """Every delivery of any release in this ledger to one address (case-folded key)."""
        with self._reading():
            rows = self._db.execute(f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE recipient_key=? ORDER BY rowid",
                                    (recipient_key.strip().lower(),)).fetchall()
        return [DeliveryRecord(*row) for row in rows]

    def releases(self) -> set[str]:
        with self._reading():
            return {row[0] for row in self._db.execute("SELECT DISTINCT release_version FROM deliveries")}
