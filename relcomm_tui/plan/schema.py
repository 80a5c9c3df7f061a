"""The plan file's schema (format 1): strict pydantic models, one per TOML table.

These models describe what a user writes. They forbid unknown keys so a typo is
an error with a location, and they are the source of the published JSON Schema
(`relcomm schema`). The loader turns them into the richer `Plan` (model.py).
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Literal, Union
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, StrictBool, StrictInt, StrictStr, field_validator

from .dates import parse_release_date

CHANNELS = ("email", "webhook", "publish", "pager", "manual")

# Which communique keys make sense on which channel; the loader reports the rest.
CHANNEL_KEYS: dict[str, frozenset[str]] = {
    "email": frozenset({"subject", "template", "body", "reply_to", "read_receipt", "headers", "invitation"}),
    "webhook": frozenset({"url", "method", "preset", "headers", "template", "body", "subject", "format"}),
    "publish": frozenset({"path", "public_url", "put_url", "subject", "template", "body", "headers"}),
    "pager": frozenset({"url", "preset", "routing_key", "severity", "subject", "template", "body", "headers"}),
    "manual": frozenset({"instructions", "subject", "template", "body"}),
}
COMMON_KEYS = frozenset({"id", "to", "channel", "description", "reminder_for"})


SPECIAL_DOMAINS_HELP = ('addresses at special-use names (.local, .localhost, .test, .invalid, .onion, .arpa) are errors '
                        'unless allowed: true, or a list such as ["corp.local"]; allowed ones are warnings')


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KeyringSecret(Strict):
    """A secret kept in the OS keyring, named "service:user"."""

    keyring: StrictStr = Field(pattern=r"^[^:]+:.+$", description='"service:user" in the OS keyring')


class EnvSecret(Strict):
    """A secret read from an environment variable."""

    env: StrictStr = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="environment variable name")


class CommandSecret(Strict):
    """A secret printed on stdout by a command such as `pass show smtp`."""

    command: StrictStr = Field(min_length=1, description="command whose first output line is the secret")
    # The plan folder the reference was written in, set by the loader (not by TOML): the command runs
    # there, whatever the current directory. A reference made in code, with none, never runs.
    _folder: Path | None = PrivateAttr(None)


SecretRef = Union[KeyringSecret, EnvSecret, CommandSecret]


class ReleaseTable(Strict):
    name: StrictStr = Field(min_length=1, description="product or release name")
    version: StrictStr = Field(min_length=1, description="the version being released")
    date: dt.date | None = Field(None, description="release date: a TOML date, 2026-12-03 (a quoted \"2026-12-03\" is accepted too)")
    notes: StrictStr | None = Field(None, description="release-notes file; its section for this version is `notes` in templates")
    gate: StrictStr | None = Field(None, description="command that must exit 0 before sending (the release was declared a success)")
    gate_timeout: StrictInt = Field(30, ge=1, le=3600, description="seconds the gate may run")

    @field_validator("date", mode="before")
    @classmethod
    def _a_real_day(cls, value: object) -> object:
        # pydantic alone takes a number as a timestamp and says "input is too short" for "Dec 3".
        return parse_release_date(value)


class SenderTable(Strict):
    from_: StrictStr = Field(alias="from", description='"Name <address>" the communiques come from')
    reply_to: StrictStr | None = Field(None, description="Reply-To address")
    receipts_to: StrictStr | None = Field(None, description="return path: where DSNs, read receipts and replies come back")
    test_to: StrictStr | None = Field(None, description="the engineer's own address for test sends")
    list_id: StrictStr | None = Field(None, description="List-Id header value, e.g. releases.example.com")
    allow_special_domains: StrictBool | list[StrictStr] = Field(False, description=SPECIAL_DOMAINS_HELP)


RATE_PATTERN = r"^\s*\d+(\.\d+)?\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*$"


class SmtpTable(Strict):
    host: StrictStr = Field("127.0.0.1", min_length=1)
    port: StrictInt = Field(587, ge=1, le=65535)
    security: Literal["tls", "starttls", "none"] = Field("starttls", description='"none" only for loopback hosts')
    username: StrictStr | None = None
    password: SecretRef | StrictStr | None = Field(None, description="a secret reference; never the password itself")
    concurrency: StrictInt = Field(4, ge=1, le=64, description="SMTP connections used at once")
    rate: StrictStr | None = Field(None, pattern=RATE_PATTERN, description='maximum messages per time, e.g. "120/min"')
    timeout: StrictInt = Field(30, ge=1, le=600, description="seconds to wait for the server")
    max_attempts: StrictInt = Field(5, ge=1, le=50, description="tries for a transient failure before it is deferred")


class TransportTable(Strict):
    smtp: SmtpTable = Field(default_factory=SmtpTable)



class ChannelTable(Strict):
    """Pace and retries of one channel that posts over HTTP. Email's are in [transport.smtp]."""

    concurrency: StrictInt = Field(4, ge=1, le=64, description="deliveries of this channel under way at once")
    rate: StrictStr | None = Field(None, pattern=RATE_PATTERN, description='maximum deliveries per time, e.g. "30/min"')
    max_attempts: StrictInt = Field(5, ge=1, le=50, description="tries for a transient failure before it is deferred")
    timeout: StrictInt = Field(15, ge=1, le=600, description="seconds one whole HTTP exchange may take")


class ChannelsTable(Strict):
    webhook: ChannelTable = Field(default_factory=ChannelTable)
    pager: ChannelTable = Field(default_factory=ChannelTable)
    publish: ChannelTable = Field(default_factory=ChannelTable)


class MaildirSourceTable(Strict):
    maildir: StrictStr


class MboxSourceTable(Strict):
    mbox: StrictStr


class ImapSourceTable(Strict):
    imap: StrictStr = Field(pattern=r"^imaps?://", description="imaps://user@host[:port]/MAILBOX or imap://... (STARTTLS)")
    password: SecretRef | StrictStr | None = None


ReceiptSource = Union[MaildirSourceTable, MboxSourceTable, ImapSourceTable]


class ReceiptsTable(Strict):
    sources: list[ReceiptSource] = Field(default_factory=list)
    dsn: StrictBool = Field(True, description="ask servers for delivery status notifications")
    read_receipts: StrictBool = Field(False, description="ask mail clients for a read receipt")
    refresh: StrictInt = Field(60, ge=5, description="seconds between automatic refreshes in the app")


class MemberTable(Strict):
    name: StrictStr = ""
    email: StrictStr | None = None
    phone: StrictStr | None = None
    role: StrictStr | None = None


class StakeholderTable(Strict):
    id: StrictStr = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    name: StrictStr | None = None
    required: StrictBool = Field(False, description="must be reached by at least one communique")
    description: StrictStr | None = None
    members: StrictStr | list[StrictStr | MemberTable] = Field(default_factory=list, description='CSV file (name,email,...) or a list of "Name <addr>" / tables')
    allow_special_domains: StrictBool | list[StrictStr] = Field(False, description=SPECIAL_DOMAINS_HELP)


# "45m", "1h", "1h30m", "90 min": hours and/or minutes, at least one digit.
DURATION_PATTERN = r"^\s*(?:(\d{1,4})\s*h(?:\s*(\d{1,5})\s*m(?:in)?)?|(\d{1,5})\s*m(?:in)?)\s*$"


class InvitationTable(Strict):
    """A calendar invitation (iTIP REQUEST) carried by an email communique: the event it invites to.

    Every key is optional here so that a missing `start` or `duration` is a located validation
    finding (plan/invitation.py) rather than a load error."""

    title: StrictStr | None = Field(None, min_length=1, description="the event's title, a template (default: the communique's subject)")
    start: dt.datetime | None = Field(None, strict=True, description="when it starts: a TOML date-time without quotes, 2026-12-04T16:00:00 with time_zone, or 2026-12-04T15:00:00Z")
    time_zone: StrictStr | None = Field(None, description='IANA time zone of `start`, e.g. "Europe/Berlin" (required when start has no offset)')
    duration: StrictStr | None = Field(None, pattern=DURATION_PATTERN, description='how long: "45m", "1h", "1h30m"')
    location: StrictStr | None = Field(None, min_length=1, description="where: a room or an address")
    url: StrictStr | None = Field(None, min_length=1, description="the meeting link, https://...")


class CommuniqueTable(Strict):
    id: StrictStr = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    to: list[StrictStr] = Field(min_length=1, description="stakeholder group ids")
    channel: Literal["email", "webhook", "publish", "pager", "manual"] = "email"
    description: StrictStr | None = None
    reminder_for: StrictStr | None = Field(None, description="id of the communique this one follows up")
    subject: StrictStr | None = None
    template: StrictStr | None = Field(None, description="template file (Jinja2 + Markdown), relative to the plan")
    body: StrictStr | None = Field(None, description="inline template, instead of `template`")
    reply_to: StrictStr | None = None
    read_receipt: StrictBool | None = None
    headers: dict[str, StrictStr | SecretRef] = Field(default_factory=dict)
    invitation: InvitationTable | None = Field(None, description="email: a calendar invitation (title, start, time_zone, duration, location, url)")
    # webhook / pager
    url: SecretRef | StrictStr | None = None
    method: Literal["POST", "PUT"] = "POST"
    preset: StrictStr | None = Field(None, description="slack, teams, mattermost, googlechat, json, text; pager: pagerduty, ntfy")
    format: Literal["json", "text"] | None = None
    routing_key: SecretRef | StrictStr | None = None
    severity: Literal["critical", "error", "warning", "info"] = "info"
    # publish
    path: StrictStr | None = Field(None, description="file to write (templated), e.g. /srv/www/releases/{{ release.version }}.html")
    public_url: StrictStr | None = None
    put_url: SecretRef | StrictStr | None = None
    # manual
    instructions: StrictStr | None = None


# -- the script: ordered steps (issue 14) ---------------------------------------------------

DURATION = r"^\s*(\d+\s*[dhms]\s*)+$"
_DURATION_PART = re.compile(r"(\d+)\s*([dhms])")
_UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


_TIME_OF_DAY = re.compile(r"^\s*(\d{1,2}):(\d{2})(?::(\d{2}))?\s*(Z|UTC|[+-]\d{2}:?\d{2}|[A-Za-z_]+(?:/[A-Za-z_+-]+)+)\s*$")


def time_of_day(text: str) -> dt.time:
    """ "17:00 UTC", "17:00Z", "18:00+01:00", "09:30 Europe/Berlin" -> an aware time (ValueError otherwise)."""
    found = _TIME_OF_DAY.match(text)
    if not found:
        raise ValueError('write a time of day with its time zone: "17:00 UTC", "18:00+01:00" or "09:30 Europe/Berlin"')
    hour, minute, second, zone = int(found[1]), int(found[2]), int(found[3] or 0), found[4]
    if hour > 23 or minute > 59 or second > 59:
        raise ValueError(f"{text.strip()!r} is not a time of day (00:00 to 23:59)")
    if zone in ("Z", "UTC"):
        tz: dt.tzinfo = dt.timezone.utc
    elif zone[0] in "+-":
        digits = zone[1:].replace(":", "")
        offset = dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        tz = dt.timezone(-offset if zone[0] == "-" else offset)
    else:
        try:
            tz = ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {zone!r}: write UTC, an offset like +01:00, or a name like Europe/Berlin") from None
    return dt.time(hour, minute, second, tzinfo=tz)


MAX_WAIT = 30 * 86400  # a script waits at most 30 days at one step (a bigger number is a typo)


def duration_seconds(text: str) -> int:
    """ "30m" -> 1800, "1h30m" -> 5400, "45s" -> 45, "2d" -> 172800 (ValueError past MAX_WAIT)."""
    total = 0
    for amount, unit in _DURATION_PART.findall(text):
        if len(amount) > 9:
            raise ValueError(f"a wait of at most 30 days, not {text.strip()[:40]!r}")
        total += int(amount) * _UNIT_SECONDS[unit]
    if total > MAX_WAIT:
        raise ValueError(f"a wait of at most 30 days, not {text.strip()[:40]!r}")
    return total


class HaltTable(Strict):
    """When the script stops after a step, before the next one starts, and says why."""

    failed_over: StrictInt | None = Field(
        None, ge=0, le=100,
        description="percent: stop when more than this share of the step's deliveries failed (rejected, in doubt, "
                    "not delivered after every try, or bounced in the reports read so far)")
    post_failed: StrictBool = Field(False, description="stop when a webhook, pager or publish post of the step failed")


class StepTable(Strict):
    """One step of the script: what goes out together, and what must happen before it does."""

    id: StrictStr = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="the step's id (relcomm release PLAN ID)")
    description: StrictStr | None = None
    send: list[StrictStr] = Field(default_factory=list, description="communique ids this step sends, together")
    after: list[StrictStr] | None = Field(
        None, description="step or communique ids that must be done first (default: the step before this one; [] for none)")
    confirmed: StrictInt | None = Field(
        None, ge=1, le=100,
        description="percent: also wait until at least this share of the people the `after` communiques reach confirmed")
    wait: StrictStr | None = Field(None, pattern=DURATION, description='delay after `after` is done, e.g. "30m", "1h30m"')
    not_before: dt.datetime | StrictStr | None = Field(
        None, description='nothing of this step goes out before this time: a TOML date-time with a time zone '
                          '(2026-11-26T17:00:00Z), or a time of day on the day the script starts ("17:00 UTC")')
    checkpoint: StrictStr | None = Field(
        None, min_length=1, description="pause before this step until the engineer confirms this (app, or relcomm release)")
    halt_if: HaltTable | None = Field(None, description="stop the script after this step when it went wrong")

    @field_validator("wait")
    @classmethod
    def _at_most_30_days(cls, value: str | None) -> str | None:
        if value is not None:
            duration_seconds(value)
        return value

    @field_validator("not_before", mode="before")
    @classmethod
    def _with_time_zone(cls, value: object) -> object:
        if isinstance(value, dt.datetime):
            if value.tzinfo is None:
                raise ValueError("the time has no time zone: write 2026-11-26T17:00:00Z or 2026-11-26T18:00:00+01:00")
            return value
        if isinstance(value, (dt.date, dt.time)):
            raise ValueError('write a date and a time with a time zone (2026-11-26T17:00:00Z), or a time of day in quotes ("17:00 UTC")')
        if isinstance(value, str):
            time_of_day(value)
        return value


class PlanFile(Strict):
    format: Literal[1] = Field(description="plan format version")
    release: ReleaseTable
    sender: SenderTable
    transport: TransportTable = Field(default_factory=TransportTable)
    channels: ChannelsTable = Field(default_factory=ChannelsTable, description="pace and retries of webhook, pager and publish")
    receipts: ReceiptsTable = Field(default_factory=ReceiptsTable)
    stakeholders: list[StakeholderTable] = Field(min_length=1)
    communiques: list[CommuniqueTable] = Field(min_length=1)
    steps: list[StepTable] = Field(
        default_factory=list, description="the script: ordered steps; without it every communique goes out at once")


def json_schema() -> dict:
    """The JSON Schema editors use to check a plan (taplo / Even Better TOML)."""
    schema = PlanFile.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "relcomm release-communications plan (format 1)"
    return schema

