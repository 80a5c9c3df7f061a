"""Calendar invitations (RFC 5545 iCalendar, RFC 5546 iTIP) inside a communique's email.

An email communique with `[communiques.invitation]` carries the event twice, the way Google
Calendar and Outlook send theirs, so every client finds it:

    multipart/mixed
      multipart/alternative
        text/plain                          the communique's text
        text/html
        text/calendar; method=REQUEST       what calendar clients act on (Accept / Decline)
      application/ics; name="invite.ics"    the same calendar, as an attachment

Each message names one attendee, its recipient (RSVP=TRUE): one message per person, and nobody
sees who else was invited. The ORGANIZER is the plan's sender: clients send replies (METHOD:REPLY)
there. The UID is one per communique and release, random, made by the ledger at the first send
(invitations/store.py); the SEQUENCE grows by one with each update; a cancel is METHOD:CANCEL.

The iCalendar text is made by the `icalendar` library (escaping, line folding, VTIMEZONE from the
zone database), never by string formatting: a title or a name holding `;`, `,` or a line break
cannot add a property.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import parseaddr

import icalendar

from ..plan.invitation import When, describe, duration_text, time_zone
from .mime import POLICY

PRODID = "-//relcomm//release communications//EN"
PREVIEW_UID = "(made at the first send)"


@dataclass(frozen=True)
class Stamp:
    """What one invitation message is: the event's UID and SEQUENCE and the iTIP method.

    `parent` is the plan's communique an update or a cancel is about (its deliveries have their
    own communique id, e.g. `presentation#2`, so each sequence reaches each person once).
    `previous` is the time the last sequence said (an update's text names both); `event` the
    event as the ledger recorded it (a cancel needs no plan: the communique may be gone)."""

    uid: str
    sequence: int = 0
    method: str = "REQUEST"            # or "CANCEL"
    parent: str = ""
    previous: When | None = None
    event: "Event | None" = None
    preview: bool = False              # the preview and test sends: not a real event yet


PREVIEW = Stamp(uid=PREVIEW_UID, preview=True)


@dataclass(frozen=True)
class Event:
    """The event as sent: what a calendar shows."""

    title: str
    when: When
    location: str | None = None
    url: str | None = None

    def as_dict(self) -> dict:
        return {"title": self.title, "when": self.when.as_dict(), "location": self.location, "url": self.url}

    @classmethod
    def from_dict(cls, data: dict) -> "Event":
        return cls(data["title"], When.from_dict(data["when"]), data.get("location"), data.get("url"))


def calendar_text(event: Event, stamp: Stamp, *, organizer: str, attendee: tuple[str, str], description: str,
                  now: dt.datetime | None = None) -> bytes:
    """The VCALENDAR of one message (CRLF lines, folded at 75 octets).

    Everything but the attendee and the description is the same for every message of a send: it is
    made once (`_frame`, per minute of DTSTAMP) and the two per-person properties are made by
    icalendar for each message and put in their place, so 10,000 invitations cost one VTIMEZONE."""
    moment = (now or dt.datetime.now(dt.timezone.utc)).astimezone(dt.timezone.utc).replace(second=0, microsecond=0)
    head, tail = _frame(event, stamp.uid, stamp.sequence, stamp.method, organizer, moment)
    person = icalendar.Event()
    name, address = attendee
    who = icalendar.vCalAddress(f"mailto:{address}")
    if name:
        who.params["CN"] = name
    who.params["CUTYPE"] = "INDIVIDUAL"
    who.params["ROLE"] = "REQ-PARTICIPANT"
    who.params["PARTSTAT"] = "NEEDS-ACTION"
    who.params["RSVP"] = "FALSE" if stamp.method == "CANCEL" else "TRUE"
    person.add("attendee", who)
    if description:
        person.add("description", description)
    lines = person.to_ical()
    inner = lines[len(b"BEGIN:VEVENT\r\n"):-len(b"END:VEVENT\r\n")]
    return head + inner + tail


_MARK = "relcomm-person-properties"


@functools.lru_cache(maxsize=32)
def _frame(event: Event, uid: str, sequence: int, method: str, organizer: str, moment: dt.datetime) -> tuple[bytes, bytes]:
    """The calendar around the per-person properties: (before them, after them)."""
    cal = icalendar.Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", method)
    vevent = icalendar.Event()
    vevent.add("uid", uid)
    vevent.add("sequence", sequence)
    vevent.add("dtstamp", moment)
    when = event.when
    vevent.add("dtstart", when.start)
    # DTEND, not DURATION: some clients (older Outlook) ignore DURATION in an invitation.
    vevent.add("dtend", when.end)
    vevent.add("summary", event.title)
    if event.location or event.url:
        vevent.add("location", event.location or event.url)
    if event.url:
        vevent.add("url", event.url)
    vevent.add("status", "CANCELLED" if method == "CANCEL" else "CONFIRMED")
    vevent.add("transp", "OPAQUE")
    org_name, org_address = parseaddr(organizer)
    org = icalendar.vCalAddress(f"mailto:{org_address}")
    if org_name:
        org.params["CN"] = org_name
    vevent.add("organizer", org)
    vevent.add("x-relcomm-mark", _MARK)
    tz = time_zone(when.zone)
    if when.zone != "UTC" and tz is not None:
        # Before the event (Outlook wants it first); only the years around the event: a zone's
        # whole history is kilobytes of RDATEs.
        first = when.start.date() - dt.timedelta(days=366)
        cal.add_component(icalendar.Timezone.from_tzinfo(tz, when.zone, first, when.end.date() + dt.timedelta(days=366)))
    cal.add_component(vevent)
    text = cal.to_ical()
    mark = f"X-RELCOMM-MARK:{_MARK}\r\n".encode()
    head, found, tail = text.partition(mark)
    assert found, "the calendar frame lost its mark"
    return head, tail


class _AsWritten(str):
    """A header written exactly as given. The stdlib would write `method="REQUEST"`; Outlook and
    Google write `method=REQUEST`, and some clients match that text (RFC 6047 2.4)."""

    def __new__(cls, name: str, value: str) -> "_AsWritten":
        made = super().__new__(cls, value)
        made.name = name
        return made

    def fold(self, *, policy) -> str:
        return f"{self.name}: {self}{policy.linesep}"


@functools.lru_cache(maxsize=8)
def _part_headers(method: str, encoding: str) -> tuple[tuple[str, object], ...]:
    """Header objects of the calendar parts, made once (the stdlib parses every assignment)."""
    return (("Content-Type", _AsWritten("Content-Type", f'text/calendar; charset="UTF-8"; method={method}')),
            ("Content-Transfer-Encoding", POLICY.header_factory("Content-Transfer-Encoding", encoding)))


@functools.lru_cache(maxsize=1)
def _attachment_headers() -> tuple[tuple[str, object], ...]:
    factory = POLICY.header_factory
    values = (
        ("Content-Type", 'application/ics; name="invite.ics"'),
        ("Content-Disposition", 'attachment; filename="invite.ics"'),
        ("Content-Transfer-Encoding", "base64"),
    )
    return tuple((name, factory(name, value)) for name, value in values)


def attach(message: EmailMessage, ics: bytes, method: str) -> None:
    """Add the calendar to a multipart/alternative message: a text/calendar alternative and invite.ics."""
    if ics.isascii():
        encoding, body = "7bit", ics.decode("ascii")
    else:
        encoding, body = "base64", _base64(ics)
    part = EmailMessage(policy=POLICY)
    for name, header in _part_headers(method, encoding):
        part[name] = header
    part.set_payload(body)
    message.attach(part)
    message.make_mixed()
    attachment = EmailMessage(policy=POLICY)
    for name, header in _attachment_headers():
        attachment[name] = header
    attachment.set_payload(_base64(ics))
    message.attach(attachment)


def _base64(data: bytes) -> str:
    text = base64.b64encode(data).decode("ascii")
    return "".join(text[i:i + 76] + "\n" for i in range(0, len(text), 76))


def description_for(text: str, event: Event) -> str:
    """The event's DESCRIPTION: the communique's text, and the link first where clients show it."""
    lines = []
    if event.url:
        lines.append(f"Join: {event.url}")
    lines.append(text.strip())
    return "\n\n".join(line for line in lines if line)


def update_note(event: Event, previous: When | None) -> str:
    """The first lines of an update's text: what changed, in a person's words."""
    if previous is not None and previous != event.when:
        return f"**Updated:** now {describe(event.when)} (was {describe(previous)})."
    return f"**Updated:** {describe(event.when)}; the place, link or title changed."


def cancel_text(event: Event) -> str:
    where = event.location or event.url or ""
    return (f"**Cancelled:** {event.title}, {describe(event.when)}{f', {where}' if where else ''}, "
            "will not take place. Your calendar removes it when you open this message.")


def summary_lines(event: Event, stamp: Stamp) -> list[str]:
    """What the preview shows of the invitation (rendered, never the template)."""
    lines = [f"Calendar invitation ({stamp.method}, sequence {stamp.sequence}): {event.title}",
             f"  when:      {describe(event.when)}, {duration_text(event.when.duration)}"]
    if event.location:
        lines.append(f"  where:     {event.location}")
    if event.url:
        lines.append(f"  join:      {event.url}")
    lines.append(f"  uid:       {stamp.uid}")
    lines.append("  replies:   Accept / Tentative / Decline come back to the sender as receipts")
    return lines
