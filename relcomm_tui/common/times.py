"""Times as the engineer reads them, in the app and on the command line alike.

* `short_time`: when something happened, `05:55` today, `12-02 05:55` on any other day, in the
  machine's local time (the ledger keeps UTC ISO text).
* `format_time`: a time the plan wrote (a script's not_before), in the time zone the plan wrote.
"""

from __future__ import annotations

import datetime as dt


def short_time(stamp: str | dt.datetime | None, *, now: dt.datetime | None = None,
               tz: dt.tzinfo | None = None) -> str:
    """`HH:MM` when `stamp` falls on today's date (local, or `tz`), else `MM-DD HH:MM`; "" for none.

    `now` is the clock (tests and snapshots fix it); text that is not a time is shown cut short."""
    if not stamp:
        return ""
    try:
        moment = stamp if isinstance(stamp, dt.datetime) else dt.datetime.fromisoformat(stamp)
    except ValueError:
        return str(stamp)[:16]
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)  # the ledger's text is UTC
    moment = moment.astimezone(tz)
    today = (now or dt.datetime.now(dt.timezone.utc)).astimezone(tz).date()
    return moment.strftime("%H:%M") if moment.date() == today else moment.strftime("%m-%d %H:%M")


def format_time(when: dt.datetime) -> str:
    """ "2026-11-26 17:00 UTC", in the time zone the plan wrote (seconds only when there are some)."""
    zone = "UTC" if when.utcoffset() == dt.timedelta(0) else (when.tzname() or when.strftime("%z"))
    seconds = f":{when:%S}" if when.second else ""
    return f"{when:%Y-%m-%d %H:%M}{seconds} {zone}"
