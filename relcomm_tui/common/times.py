"""One way to show a time, in the app and on the command line: `05:55` today, `12-02 05:55` on
any other day, in the machine's local time (the ledger keeps UTC ISO text)."""

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
