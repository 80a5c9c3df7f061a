"""The release date: what is accepted, and one precise message for what is not.

TOML has a date type (`date = 2026-12-03`); that is what the docs show. A quoted ISO date
(`date = "2026-12-03"`) means exactly the same day, so it is accepted on purpose rather than
refused over two quote marks; anything else a person might write (`"Dec 3"`, `"03/12/2026"`, a
time of day, a number) is refused with the reason. A date that does not exist (`2026-13-03`,
`2026-11-31`) is named with what is wrong with it, quoted or not: unquoted, tomllib only says
"expected newline", so the loader asks `toml_date_problem` about the line first.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re

_ISO = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$")
# `key = 2026-13-03` (maybe followed by a time or a comment) on one TOML line.
_TOML_DATE = re.compile(r"^\s*([A-Za-z0-9_\-]+)\s*=\s*(\d{4}-\d{1,2}-\d{1,2})(?=[\sT#]|$)")
EXAMPLE = "2026-12-03"


def date_problem(text: str) -> str | None:
    """Why `text` (YYYY-MM-DD) is not a real date, in words ("there is no month 13"), or None."""
    found = _ISO.match(text.strip())
    if found is None:
        return f"{text!r} is not a date written YYYY-MM-DD"
    year, month, day = (int(part) for part in found.groups())
    if len(found.group(2)) != 2 or len(found.group(3)) != 2:
        return f"{text} is not written YYYY-MM-DD (two digits for the month and the day)"
    if not 1 <= month <= 12:
        return f"{text} is not a date: there is no month {month} (months are 01 to 12)"
    last = calendar.monthrange(year, month)[1] if year >= 1 else 31
    if not 1 <= day <= last:
        return (f"{text} is not a date: {calendar.month_name[month]} {year} has {last} days, "
                f"there is no day {day}")
    if year < 1:
        return f"{text} is not a date: there is no year 0"
    return None


def parse_release_date(value: object) -> dt.date | None:
    """The `release.date` value as TOML gave it -> a date. Raises ValueError with the reason."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        raise ValueError(f"{value.isoformat()} has a time of day; the release date is a day")
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        problem = date_problem(value)
        if problem:
            raise ValueError(problem)
        return dt.date.fromisoformat(value.strip())
    raise ValueError(f"{value!r} is not a date")


def toml_date_problem(line: str) -> tuple[str, str, int] | None:
    """For a TOML line tomllib could not read: (key, why its date value is not a date, column), or None."""
    found = _TOML_DATE.match(line)
    if found is None:
        return None
    problem = date_problem(found.group(2))
    if problem is None:
        return None
    return found.group(1), problem, found.start(2) + 1
