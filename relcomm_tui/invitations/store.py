"""The ledger's record of calendar invitations: each sequence of a communique's event as sent.

One row per (release, communique, sequence): the event's random UID (the same for every
sequence), the iTIP method (REQUEST, or CANCEL for the last one), the event as it was (JSON), the
plan's fingerprint of it, and when the row was made. Rows are only added, under the send lock,
before a run's first message (invitations.send), so a delivery rendered in a run carries the
latest sequence made before it was accepted: `sequence_of` reads a delivery's sequence from its
times, and an update's deliveries (`presentation#2`) carry theirs in their communique id.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from dataclasses import dataclass

from ..compose.invitation import Event
from ..plan.invitation import describe
from ..store.ledger import Ledger
from ..store.records import ID_BYTES, ID_PREFIX, DeliveryRecord
from ..store.states import now

SEPARATOR = "#"  # never in a plan's communique id: `presentation#2` cannot be a communique of the plan


@dataclass(frozen=True)
class Version:
    release_version: str
    communique_id: str
    sequence: int
    method: str
    uid: str
    event: Event
    fingerprint: str
    created: str


_COLUMNS = "release_version, communique_id, sequence, method, uid, event, fingerprint, created"


def _version(row: tuple) -> Version:
    release, communique, sequence, method, uid, event, fingerprint, created = row
    return Version(release, communique, sequence, method, uid, Event.from_dict(json.loads(event)), fingerprint, created)


def new_uid(domain: str) -> str:
    """An event's UID: random (nobody can answer for an event they were not sent), relcomm's shape."""
    return f"{ID_PREFIX}{secrets.token_hex(ID_BYTES)}@{domain or 'relcomm.invalid'}"


def family(communique_id: str) -> tuple[str, int | None]:
    """`presentation#2` -> ("presentation", 2); a plan communique -> (its id, None)."""
    base, sep, number = communique_id.partition(SEPARATOR)
    return (base, int(number)) if sep and number.isdigit() else (communique_id, None)


def sequence_id(communique_id: str, sequence: int) -> str:
    return f"{communique_id}{SEPARATOR}{sequence}"


def versions(ledger: Ledger, release_version: str, communique_id: str) -> list[Version]:
    with ledger._reading():
        rows = ledger._db.execute(
            f"SELECT {_COLUMNS} FROM invitations WHERE release_version=? AND communique_id=? ORDER BY sequence",
            (release_version, communique_id)).fetchall()
    return [_version(row) for row in rows]


def released(ledger: Ledger, release_version: str) -> dict[str, list[Version]]:
    """communique id -> its versions, for every invitation of a release."""
    with ledger._reading():
        rows = ledger._db.execute(f"SELECT {_COLUMNS} FROM invitations WHERE release_version=? "
                                  "ORDER BY communique_id, sequence", (release_version,)).fetchall()
    found: dict[str, list[Version]] = {}
    for row in rows:
        found.setdefault(row[1], []).append(_version(row))
    return found


def by_uid(ledger: Ledger, uid: str) -> list[Version]:
    with ledger._reading():
        rows = ledger._db.execute(f"SELECT {_COLUMNS} FROM invitations WHERE uid=? ORDER BY sequence",
                                  (uid.strip(),)).fetchall()
    return [_version(row) for row in rows]


def record(ledger: Ledger, release_version: str, communique_id: str, method: str, event: Event, fingerprint: str,
           *, uid: str | None = None, replace_sequence: int | None = None) -> Version:
    """Add the next sequence (or, with `replace_sequence`, say anew what a sequence no message carried
    yet says). The UID is the communique's first one, else `uid`."""
    stamp = now()

    def work(db: sqlite3.Connection) -> tuple:
        last = db.execute("SELECT sequence, uid FROM invitations WHERE release_version=? AND communique_id=? "
                          "ORDER BY sequence DESC LIMIT 1", (release_version, communique_id)).fetchone()
        the_uid = last[1] if last else uid
        if the_uid is None:
            raise ValueError("the first invitation of a communique needs a uid")
        text = json.dumps(event.as_dict(), sort_keys=True)
        if replace_sequence is not None and last is not None and last[0] == replace_sequence:
            db.execute("UPDATE invitations SET method=?, event=?, fingerprint=?, created=? WHERE release_version=? "
                       "AND communique_id=? AND sequence=?",
                       (method, text, fingerprint, stamp, release_version, communique_id, replace_sequence))
            sequence = replace_sequence
        else:
            sequence = last[0] + 1 if last else 0
            db.execute(f"INSERT INTO invitations ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?)",
                       (release_version, communique_id, sequence, method, the_uid, text, fingerprint, stamp))
        return (release_version, communique_id, sequence, method, the_uid, text, fingerprint, stamp)

    return _version(ledger._write(work))  # type: ignore[arg-type]


def sequence_of(delivery: DeliveryRecord, known: list[Version]) -> int | None:
    """The SEQUENCE a delivery's message carried (None if none went out): an update's is in its id;
    the plan communique's is the latest version made before it was accepted (or last tried)."""
    if delivery.sent_at is None:
        return None
    _, number = family(delivery.communique_id)
    if number is not None:
        return number
    moment = delivery.accepted_at or delivery.updated
    carried = [v.sequence for v in known if v.created <= moment]
    return max(carried) if carried else (known[0].sequence if known else None)


def summary(known: list[Version]) -> str:
    """One line for `relcomm status`: where the invitation stands."""
    last = known[-1]
    if last.method == "CANCEL":
        return f"invitation cancelled (sequence {last.sequence}): {last.event.title}, {describe(last.event.when)}"
    updated = f", updated {len(known) - 1} time(s)" if last.sequence else ""
    return f"invitation sequence {last.sequence}{updated}: {last.event.title}, {describe(last.event.when)}"


def as_json(known: list[Version]) -> list[dict]:
    return [{"sequence": v.sequence, "method": v.method, "uid": v.uid, "event": v.event.as_dict(), "created": v.created}
            for v in known]
