"""The contract between the send engine and a channel, and the few things every channel shares.

The engine owns the ledger, the retries and the pace; a channel only delivers. Per delivery the
engine hands the channel the job and its `Intent`, never None:

    class Channel(Protocol):
        name: str
        settings: ChannelSettings                       # how many at once, how fast, how often retried
        async def open(self) -> None                     # connect, log in; raise ChannelStopped on config errors
        async def deliver(self, job, intent) -> Outcome  # many at once, up to settings.in_flight
        async def rehearse(self, job) -> Rehearsal       # the dry run: what would go out; nothing leaves
        async def close(self) -> None

Exactly-once: a channel awaits `intent.commit()` right before the first byte of a delivery leaves
the process (the ledger then says `sending`, durably). A process that dies after it leaves the
delivery `in doubt`, never silently sent again; one that dies before it leaves it queued. A channel
whose delivery never leaves the process (a manual step) never commits.

Retries are the engine's alone, with one `RetryPolicy` per channel (backoff with jitter, a
receiver's Retry-After honoured up to RETRY_AFTER_MAX): a channel reports a `transient` outcome
once and is called again.

The dry run: every channel renders what it would send as one `Rehearsal` (a file suffix and the
bytes, secrets masked), and `Outbox` writes it: `<outbox>/<communique>/<delivery>.<suffix>`, except
email, which goes into the outbox's Maildir (`new/`) so a mail client opens it as it would arrive.
"""

from __future__ import annotations

import mailbox
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Awaitable, Callable, Literal, Protocol

from ..common.errors import UserError
from ..common.files import atomic_write
from ..transport.retry import RETRY_AFTER_MAX, RetryPolicy  # noqa: F401  (part of the contract)

if TYPE_CHECKING:
    from ..compose import Rendered
    from ..plan.model import Communique, Plan, Recipient, StakeholderGroup

# What a channel can say about one attempt. The engine maps these onto ledger states:
# "transient" is retried with backoff, then becomes `deferred`. "awaiting" is a manual step
# handed to a person: nothing was sent, the engineer confirms it later.
OutcomeState = Literal["accepted", "rejected", "transient", "in_doubt", "awaiting"]


@dataclass(frozen=True)
class Outcome:
    state: OutcomeState
    reply: str = ""        # the other side's words (SMTP reply, HTTP status line)
    detail: str = ""       # our explanation, e.g. "connection lost after the message was sent"
    retry_after: float | None = None  # seconds the other side asked us to wait (HTTP Retry-After)


class DeliveryWithdrawn(Exception):
    """Raised by `Intent.commit` when the run was paused-then-cancelled before this delivery's
    first byte: nothing was recorded or sent; the channel gives its connection back and re-raises."""


class ChannelStopped(UserError):
    """A failure that would fail every delivery the same way (auth, TLS, unreachable server):
    the run stops at once with this one message instead of a row of failures each."""


@dataclass
class DeliveryJob:
    """One delivery to attempt: who, what, and the ids it must carry."""

    delivery_id: str
    communique: "Communique"
    group: "StakeholderGroup | None"
    recipient: "Recipient | None"
    message_id: str
    envelope_id: str
    attempt: int = 1                    # within this run


class Intent:
    """The promise a channel keeps before the first byte of one delivery leaves: `await commit()`.

    The engine's commits the `sending` row (and may hold on a pause or withdraw on a cancel);
    `Intent.unrecorded()` is for a send outside the deliveries (the test send), where nothing is
    recorded and so nothing can be in doubt."""

    def __init__(self, commit: Callable[[], Awaitable[None]]) -> None:
        self._commit = commit

    async def commit(self) -> None:
        await self._commit()

    @classmethod
    def unrecorded(cls) -> "Intent":
        async def nothing() -> None:
            return None

        return cls(nothing)


# -- pace ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChannelSettings:
    """What a channel tells the engine about its pace, from the plan."""

    in_flight: int                  # deliveries the engine hands it at once
    rate: float | None = None       # deliveries started per second at most; None: no limit
    retry: RetryPolicy = field(default_factory=RetryPolicy)


def parse_rate(text: str | None) -> float | None:
    """Deliveries per second from "120/min", "2/s", "1000/hour"; None for no limit."""
    if not text:
        return None
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*", text)
    if not found:
        raise UserError(f"rate {text!r} is not understood", 'write it like "120/min", "2/s" or "1000/hour"')
    amount = float(found.group(1))
    per = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}[found.group(2)]
    return amount / per if amount > 0 else None


class PaceTable(Protocol):
    """[transport.smtp] or [channels.NAME]: the keys every channel's pace is made of."""

    concurrency: int
    rate: str | None
    max_attempts: int


def settings_from(table: PaceTable, in_flight_each: int = 1) -> ChannelSettings:
    """A channel's settings from its plan table: `concurrency` units (connections, posts) with
    `in_flight_each` deliveries handed to each, `rate`, and `max_attempts` for the retry policy."""
    return ChannelSettings(in_flight=max(1, table.concurrency) * in_flight_each, rate=parse_rate(table.rate),
                           retry=RetryPolicy(max_attempts=table.max_attempts))


# -- the dry run -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Rehearsal:
    """What one delivery would send, as a file for the outbox. Secrets are already masked."""

    suffix: str            # "eml" (a message: into the outbox's Maildir), "json", "html", "txt"
    data: bytes
    note: str = ""         # what else would happen, e.g. "/srv/www/4.2.0.html would be written"


class Outbox:
    """The dry run's folder (already checked to be the user's own, see state.check_outbox)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._maildir: mailbox.Maildir | None = None

    def path_for(self, job: DeliveryJob, suffix: str) -> Path:
        return self.folder / job.communique.id / f"{job.delivery_id}.{suffix}"

    def write(self, job: DeliveryJob, rehearsal: Rehearsal) -> Path:
        """Write it where a person looks for it; private (0600): it may name people and addresses."""
        if rehearsal.suffix == "eml":
            if self._maildir is None:
                self._maildir = mailbox.Maildir(self.folder, create=True)
            path = self.folder / "new" / self._maildir.add(rehearsal.data)
            path.chmod(0o600)  # mailbox uses the umask
            return path
        path = self.path_for(job, rehearsal.suffix)
        atomic_write(path, rehearsal.data, 0o600)
        return path


class Channel(Protocol):
    name: str
    settings: ChannelSettings

    async def open(self) -> None: ...

    async def deliver(self, job: DeliveryJob, intent: Intent) -> Outcome: ...

    async def rehearse(self, job: DeliveryJob) -> Rehearsal: ...

    async def close(self) -> None: ...


RenderJob = Callable[[DeliveryJob], "Rendered"]


def post_render(plan: "Plan") -> RenderJob:
    """How webhook, pager, publish and manual render a job: with compose, as the preview does.
    A post goes to groups, not to a person: it is rendered without `recipient`."""
    from ..compose import render  # compose (Jinja2, Markdown) is loaded when a channel first renders

    def build(job: DeliveryJob) -> "Rendered":
        recipient = job.recipient if job.communique.per_recipient else None
        return render(plan, job.communique, job.group, recipient, message_id=job.message_id)

    return build


def render_error_text(error: Exception) -> str:
    """A render or preset error in one line: its message and hint."""
    message = getattr(error, "message", None) or str(error) or type(error).__name__
    hint = getattr(error, "hint", "")
    return f"{message} ({hint})" if hint else message
