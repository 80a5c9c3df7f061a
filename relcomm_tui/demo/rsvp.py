"""Answers to calendar invitations for the demo: what an invitee's Outlook sends back.

For a message carrying a `text/calendar; method=REQUEST` part, `build_rsvp` makes the iTIP REPLY an
Outlook / Exchange client sends when the person clicks Accept, Tentative or Decline: Subject
"Accepted: <title>", multipart/alternative with a short text/plain and the `text/calendar;
method=REPLY` part naming the attendee with their PARTSTAT, the same UID and SEQUENCE
(tests/itip/outlook-exchange-accepted.eml is the real shape). The demo's report generator writes
it into the receipts Maildir, so `relcomm demo` shows answers arriving.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import email.utils
from email.message import EmailMessage

SUBJECTS = {"ACCEPTED": "Accepted", "TENTATIVE": "Tentative", "DECLINED": "Declined"}
WORDS = {"ACCEPTED": "accepted", "TENTATIVE": "tentatively accepted", "DECLINED": "declined"}


def invitation_of(original: bytes):
    """The VEVENT of a METHOD:REQUEST calendar part in `original`, if it has one."""
    import icalendar  # here: slow to import, and only invitations need it
    message = email.message_from_bytes(original, policy=email.policy.default)
    for part in message.walk():
        if part.get_content_type() != "text/calendar":
            continue
        try:
            calendar = icalendar.Calendar.from_ical(part.get_payload(decode=True))
        except ValueError:
            return None
        if str(calendar.get("METHOD", "")).upper() == "REQUEST":
            for event in calendar.walk("VEVENT"):
                return event
    return None


def build_rsvp(original: bytes, recipient: str, answer: str, *, now: dt.datetime | None = None) -> bytes | None:
    """The REPLY `recipient` sends to an invitation (answer: ACCEPTED, TENTATIVE or DECLINED), or None."""
    import icalendar  # here: slow to import, as above
    event = invitation_of(original)
    if event is None or answer not in SUBJECTS:
        return None
    moment = (now or dt.datetime.now(dt.timezone.utc)).astimezone(dt.timezone.utc)
    reply = icalendar.Calendar()
    reply.add("method", "REPLY")
    reply.add("prodid", "Microsoft Exchange Server 2010")
    reply.add("version", "2.0")
    vevent = icalendar.Event()
    attendee = icalendar.vCalAddress(f"mailto:{recipient}")
    attendee.params["PARTSTAT"] = answer
    vevent.add("attendee", attendee)
    title = str(event.get("SUMMARY", ""))
    vevent.add("summary", f"{SUBJECTS[answer]}: {title}")
    for name in ("DTSTART", "DTEND"):
        if name in event:
            vevent.add(name.lower(), event.decoded(name))
    vevent.add("uid", str(event.get("UID", "")))
    vevent.add("dtstamp", moment)
    vevent.add("sequence", int(event.get("SEQUENCE", 0)))
    reply.add_component(vevent)
    organizer = str(event.get("ORGANIZER", "")).partition(":")[2] or "organizer@invalid"

    message = EmailMessage(policy=email.policy.SMTP)
    message["From"] = recipient
    message["To"] = organizer
    message["Subject"] = f"{SUBJECTS[answer]}: {title}"
    message["Date"] = email.utils.format_datetime(moment)
    message["Message-ID"] = email.utils.make_msgid(domain=recipient.rpartition("@")[2] or "demo.invalid")
    message.set_content(f"{recipient} has {WORDS[answer]} this invitation.\n")
    message.add_alternative(reply.to_ical().decode("utf-8"), subtype="calendar", charset="utf-8",
                            params={"method": "REPLY"})
    return message.as_bytes()
