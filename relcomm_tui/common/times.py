"""Times as the engineer reads them: in the time zone the plan wrote."""

from __future__ import annotations

import datetime as dt


def format_time(when: dt.datetime) -> str:
    """ "2026-11-26 17:00 UTC", in the time zone the plan wrote (seconds only when there are some)."""
    zone = "UTC" if when.utcoffset() == dt.timedelta(0) else (when.tzname() or when.strftime("%z"))
    seconds = f":{when:%S}" if when.second else ""
    return f"{when:%Y-%m-%d %H:%M}{seconds} {zone}"
