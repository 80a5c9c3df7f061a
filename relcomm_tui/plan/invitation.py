"""A communique's calendar invitation as the plan writes it: when, how long, where.

`when_of(table)` turns `[communiques.invitation]` into an aware start, its time zone and a
duration, or says what is wrong (each problem a rule id, a message, a hint and the key it is
about) so the checks can point at the line. Pure: no clock (the caller gives `now`), no ledger.

`fingerprint` names what an attendee's calendar shows; when it changes after the invitation went
out, the next send sends an update with the next SEQUENCE (invitations/send.py).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import re
import zoneinfo
from dataclasses import dataclass

from .locate import close_match
from .schema import DURATION_PATTERN, CommuniqueTable, InvitationTable

_DURATION = re.compile(DURATION_PATTERN)


@dataclass(frozen=True)
class When:
    """When the event is: an aware start in its zone ("UTC" when the plan gave only an offset)."""

    start: dt.datetime
    zone: str
    duration: dt.timedelta

    @property
    def end(self) -> dt.datetime:
        return self.start + self.duration

    def as_dict(self) -> dict:
        return {"start": self.start.isoformat(), "zone": self.zone, "minutes": int(self.duration.total_seconds() // 60)}

    @classmethod
    def from_dict(cls, data: dict) -> "When":
        start = dt.datetime.fromisoformat(data["start"])
        zone = data.get("zone") or "UTC"
        tz = time_zone(zone)
        if tz is not None:
            start = start.astimezone(tz)
        return cls(start, zone, dt.timedelta(minutes=int(data["minutes"])))


@dataclass(frozen=True)
class Problem:
    rule: str      # a checks rule id: invitation-incomplete, invitation-time-zone, invitation-past, url-invalid
    message: str
    hint: str
    key: str       # the key under `invitation` it is about ("" for the table itself)


def parse_duration(text: str | None) -> dt.timedelta | None:
    """ "1h30m" -> 90 minutes; None when absent or not a duration."""
    found = _DURATION.match(text or "")
    if not found:
        return None
    hours, minutes, alone = (int(g) if g else 0 for g in found.groups())
    return dt.timedelta(hours=hours, minutes=minutes + alone)


@functools.lru_cache(maxsize=64)
def time_zone(name: str) -> dt.tzinfo | None:
    """The IANA zone of that name ("UTC" too), None when this host's zone database has no such zone."""
    if not name or name != name.strip() or ".." in name or name.startswith("/"):
        return None
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return None


def _zone_hint(name: str) -> str:
    close = close_match(name, sorted(zoneinfo.available_timezones()), cutoff=0.7)
    if close:
        return f'did you mean "{close}"?'
    return 'use an IANA name such as "Europe/Berlin", "America/New_York" or "UTC"'


def when_of(table: InvitationTable, now: dt.datetime | None = None) -> tuple[When | None, list[Problem]]:
    """The event's time, and every problem with it (a start in the past only when `now` is given)."""
    problems: list[Problem] = []
    zone = None
    if table.time_zone is not None:
        zone = time_zone(table.time_zone)
        if zone is None:
            problems.append(Problem("invitation-time-zone", f"unknown time zone {table.time_zone!r}",
                                    _zone_hint(table.time_zone), "time_zone"))
    duration = parse_duration(table.duration)
    if table.duration is None:
        problems.append(Problem("invitation-incomplete", "the invitation has no `duration`",
                                'add duration = "45m" (or "1h", "1h30m"): calendars need to know when it ends',
                                ""))
    elif duration is not None and duration <= dt.timedelta(0):
        problems.append(Problem("invitation-incomplete", f"the duration {table.duration!r} is zero",
                                'write how long it lasts, e.g. duration = "45m"', "duration"))
    start = table.start
    if start is None:
        problems.append(Problem("invitation-incomplete", "the invitation has no `start`",
                                "add start = 2026-12-04T16:00:00 and time_zone = \"Europe/Berlin\"", ""))
    elif start.tzinfo is None and table.time_zone is None:
        problems.append(Problem("invitation-time-zone", f"start {start.isoformat()} has no time zone",
                                'add time_zone = "Europe/Berlin" (the zone the time is in), or write the offset: '
                                f"{start.isoformat()}Z for UTC", "start"))
    elif start.tzinfo is not None and zone is not None:
        said, meant = start.utcoffset(), start.replace(tzinfo=None).replace(tzinfo=zone).utcoffset()
        if said != meant:
            problems.append(Problem(
                "invitation-time-zone",
                f"start says UTC{_offset(said)} but {table.time_zone} is UTC{_offset(meant)} on {start.date()}",
                f"write start without an offset ({start.replace(tzinfo=None).isoformat()}) and keep time_zone, "
                "or fix the offset", "start"))
    if not table.location and not table.url:
        problems.append(Problem("invitation-incomplete", "the invitation says neither where (`location`) nor how to join (`url`)",
                                'add location = "Auditorium B" or url = "https://meet.example.com/..." (or both)', ""))
    if table.url and not re.match(r"^https?://[^/\s?#]+", table.url):
        problems.append(Problem("url-invalid", f"the meeting url {table.url!r} is not an http(s) URL with a host",
                                "write a full link, e.g. https://meet.example.com/orion", "url"))
    if any(p.rule == "invitation-time-zone" for p in problems) or start is None or duration is None \
            or duration <= dt.timedelta(0):
        return None, problems
    if start.tzinfo is None:
        assert zone is not None
        start = start.replace(tzinfo=zone)
        name = table.time_zone or "UTC"
    elif zone is not None:
        start = start.astimezone(zone)
        name = table.time_zone or "UTC"
    else:
        start, name = start.astimezone(dt.timezone.utc), "UTC"
    when = When(start, name, duration)
    if now is not None and when.start <= now:
        problems.append(Problem("invitation-past", f"the event starts in the past ({describe(when)})",
                                "change start; an invitation already sent gets an update at the next send", "start"))
    return when, problems


def _offset(delta: dt.timedelta | None) -> str:
    minutes = int((delta or dt.timedelta(0)).total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def describe(when: When) -> str:
    """ "Fri 4 Dec 2026 16:00-16:45 Europe/Berlin (15:00 UTC)": what a person reads."""
    start, end = when.start, when.end
    text = f"{start:%a} {start.day} {start:%b %Y %H:%M}-"
    text += f"{end:%H:%M}" if end.date() == start.date() else f"{end:%a} {end.day} {end:%b %H:%M}"
    text += f" {when.zone}"
    if when.zone != "UTC":
        text += f" ({start.astimezone(dt.timezone.utc):%H:%M} UTC)"
    return text


def duration_text(duration: dt.timedelta) -> str:
    minutes = int(duration.total_seconds() // 60)
    hours, rest = divmod(minutes, 60)
    parts = ([f"{hours} hour{'s' if hours != 1 else ''}"] if hours else []) + ([f"{rest} minutes"] if rest else [])
    return " ".join(parts) or "0 minutes"


def fingerprint(spec: CommuniqueTable) -> str:
    """What an attendee's calendar shows, as written in the plan: title (or subject), time, place, link."""
    table = spec.invitation
    if table is None:
        return ""
    when, _ = when_of(table)
    data = {
        "title": table.title if table.title is not None else spec.subject,
        "when": when.as_dict() if when is not None else None,
        "location": table.location, "url": table.url,
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:20]
