"""Calendar replies (iTIP METHOD:REPLY, RFC 5546 over email, RFC 6047) as receipts.

An invitee's mail client answers a relcomm invitation with a REPLY to the organizer: Outlook and
Exchange as a multipart/alternative whose `text/calendar; method=REPLY` part says
`PARTSTAT=ACCEPTED` (Subject "Accepted: ..."), Google Calendar and Thunderbird with the same part
inside multipart/mixed plus an `invite.ics` attachment, Apple Calendar as a text/calendar
attachment. `tests/itip/` holds one of each.

* `reply_of(texts)` reads the calendar parts parse.py collected (never those of a returned
  message: a bounced invitation stays a bounce) and gives the UID, the SEQUENCE and each
  attendee's answer, or None when no part is a REPLY.
* `match(...)` credits an answer to a delivery like every other report (receipts.correlate): the
  UID must be one this ledger made (random, `relcomm.` + 128 bits), the attendee one of the people
  it went to, and the answer not older than what was sent. A UID in relcomm's shape that this
  ledger does not hold is **another send**; anyone else's UID is not ours.
* `RSVP_ACTIONS` says what each answer means for the receipts view (receipts.status): accepted
  confirms (acknowledged), tentative and declined are shown as such.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

from ..store.records import is_relcomm_message_id

MAX_CALENDAR_CHARS = 256 * 1024  # one invitation is a few kB; a bigger one is not a reply we sent for
MAX_ANSWERS = 20  # a reply speaks for its sender (and a delegate or two): never a receipt row per line of a flood
# PARTSTAT values (RFC 5545 3.2.12) a VEVENT reply can carry, as the receipts store them
ANSWERS = {"ACCEPTED": "accepted", "TENTATIVE": "tentative", "DECLINED": "declined",
           "DELEGATED": "delegated", "NEEDS-ACTION": "needs-action"}
_MAILTO = re.compile(r"^\s*mailto:", re.I)


@dataclass(frozen=True)
class Answer:
    address: str          # the attendee, lower-cased, without mailto:
    partstat: str         # accepted, tentative, declined, delegated, needs-action
    comment: str = ""     # a COMMENT the attendee wrote, if any


@dataclass
class Reply:
    uid: str
    sequence: int
    answers: list[Answer] = field(default_factory=list)
    summary: str = ""


def address_of(value: object) -> str:
    """`mailto:Ada@Example.com` (or an EMAIL= parameter, as Apple writes for other URIs) -> ada@example.com."""
    text = str(value or "")
    params = getattr(value, "params", None) or {}
    if not _MAILTO.match(text) and params.get("EMAIL"):
        text = str(params["EMAIL"])
    return _MAILTO.sub("", text).strip().strip("<>").lower()


def reply_of(texts: list[str]) -> Reply | None:
    """The first calendar text that is a METHOD:REPLY with a VEVENT, read; None if none is."""
    import icalendar  # here: slow to import, and most refreshes read no calendar at all
    for text in texts:
        if "REPLY" not in text.upper() or len(text) > MAX_CALENDAR_CHARS:
            continue
        try:
            calendar = icalendar.Calendar.from_ical(text)
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            continue  # not iCalendar at all: the rest of the message decides what it is
        if str(calendar.get("METHOD", "")).strip().upper() != "REPLY":
            continue
        for event in calendar.walk("VEVENT"):
            uid = str(event.get("UID", "")).strip()
            if not uid:
                continue
            try:
                sequence = int(str(event.get("SEQUENCE", "0")).strip() or 0)
            except ValueError:
                sequence = 0
            attendees = event.get("ATTENDEE", [])
            if not isinstance(attendees, list):
                attendees = [attendees]
            answers = []
            for attendee in attendees[:MAX_ANSWERS]:
                params = getattr(attendee, "params", None) or {}
                partstat = str(params.get("PARTSTAT", "NEEDS-ACTION")).upper()
                address = address_of(attendee)
                if address and partstat in ANSWERS:
                    answers.append(Answer(address, ANSWERS[partstat], " ".join(str(event.get("COMMENT", "")).split())[:200]))
            return Reply(uid, max(sequence, 0), answers, " ".join(str(event.get("SUMMARY", "")).split())[:200])
    return None


# -- correlation -------------------------------------------------------------------------------

NOT_INVITED = "from someone not invited"  # a forwarded invitation answered by someone else


def lookup(ledger) -> "Callable[[str], tuple[list, list]]":
    """uid -> (the ledger's versions of that event, the deliveries of its communique), cached per refresh."""
    from ..invitations import store  # here, not at the top: it loads icalendar and compose (slow to import)

    cache: dict[str, tuple[list, list]] = {}

    def find(uid: str) -> tuple[list, list]:
        if uid not in cache:
            known = store.by_uid(ledger, uid)
            rows = []
            if known:
                base = known[0].communique_id
                rows = [d for d in ledger.deliveries(known[0].release_version)
                        if store.family(d.communique_id)[0] == base]
            cache[uid] = (known, rows)
        return cache[uid]

    return find


def match(report, at: str | None, find) -> list:
    """One correlate.Match per answer of a calendar reply (see the module's docstring)."""
    # here, not at the top: parse and correlate import this module (reply_of, lookup and match)
    from .correlate import ANOTHER_SEND, BEFORE_SENT, BY_CALENDAR_UID, CLOCK_ALLOWANCE, NOT_OURS, Match, dated_before
    from .parse import RecipientOutcome

    outcomes = report.recipients or [RecipientOutcome(address="")]
    uid = (report.calendar_uid or "").strip()
    known, rows = find(uid) if uid and find is not None else ([], [])
    if not known:
        # relcomm's UIDs have its Message-ID shape: one this ledger never made is another send's
        note = ANOTHER_SEND if is_relcomm_message_id(f"<{uid}>") else NOT_OURS
        return [Match(outcome, None, None, note) for outcome in outcomes]
    base = known[0].communique_id
    matches = []
    for outcome in outcomes:
        address = outcome.address.strip().lower()
        mine = [d for d in rows if d.recipient_key == address and d.sent_at is not None and d.channel == "email"]
        if not mine:
            matches.append(Match(outcome, None, None, NOT_INVITED))
            continue
        # The person's delivery of the plan's communique carries every answer (the latest one shows);
        # without one (never the case for relcomm's own sends), their latest invitation.
        delivery = next((d for d in mine if d.communique_id == base), None) or max(mine, key=lambda d: d.sent_at or "")
        if dated_before(at, delivery.sent_at, CLOCK_ALLOWANCE):
            matches.append(Match(outcome, None, None, BEFORE_SENT))
            continue
        matches.append(Match(outcome, delivery, BY_CALENDAR_UID))
    return matches


def answer_counts(plan, rows) -> dict[str, dict[str, int]]:
    """Per communique with an invitation: how many invited people accepted, were tentative, declined
    or have not answered (their delivery of the plan's communique; receipts.status rows)."""
    counts: dict[str, dict[str, int]] = {}
    for communique in plan.communiques:
        if communique.spec.invitation is None:
            continue
        mine = [r for r in rows if r.communique_id == communique.id and r.first_sent]
        if not mine:
            continue
        tally = {"invited": len(mine), "accepted": 0, "tentative": 0, "declined": 0}
        for row in mine:
            if row.rsvp in tally:
                tally[row.rsvp] += 1
        tally["no answer"] = len(mine) - tally["accepted"] - tally["tentative"] - tally["declined"]
        counts[communique.id] = tally
    return counts
