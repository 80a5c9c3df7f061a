"""Channels: one module per way a communique goes out, behind one small async interface.

The send engine owns the ledger; a channel only delivers. The contract that keeps delivery
exactly-once is `DeliveryJob.commit_intent`: a channel awaits it right before the first
byte of a delivery leaves the process (it records the delivery as `sending`, durably), and
reports in its `Outcome` whether anything may have reached the other side.

    class Channel(Protocol):
        async def open(self) -> None            # connect, log in; raise ChannelStopped on config errors
        async def deliver(self, job) -> Outcome  # many at once, up to `concurrency`
        async def close(self) -> None

Email is `channels.email.EmailChannel`; webhook, publish, pager and manual are registered
below. A channel whose module cannot be imported gives None from `channel_factory`, and the
engine reports its communiques as not sent ("channel X not available yet") instead of failing.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Awaitable, Callable, Literal, Protocol

from ..common.errors import UserError

if TYPE_CHECKING:
    from ..plan.model import Communique, Recipient, StakeholderGroup

# What a channel can say about one attempt. The engine maps these onto ledger states:
# "transient" is retried with backoff, then becomes `deferred`. "awaiting" is a manual step
# handed to a person: nothing was sent, the engineer confirms it later.
OutcomeState = Literal["accepted", "rejected", "transient", "in_doubt", "awaiting"]

# The longest a receiver's Retry-After is waited for, per retry: asked for longer (a day, or 400
# digits), the delivery is deferred at once for the next `relcomm send` instead of holding the run.
RETRY_AFTER_MAX = 60.0


@dataclass(frozen=True)
class Outcome:
    state: OutcomeState
    reply: str = ""        # the other side's words (SMTP reply, HTTP status line)
    detail: str = ""       # our explanation, e.g. "connection lost after the message was sent"
    intent_committed: bool = False  # commit_intent was awaited: the ledger says `sending`
    retry_after: float | None = None  # seconds the other side asked us to wait (HTTP Retry-After)


class DeliveryWithdrawn(Exception):
    """Raised by `commit_intent` when the run was paused-then-cancelled before this delivery's
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
    commit_intent: Callable[[], Awaitable[None]] = field(default=None, repr=False)  # type: ignore[assignment]


class Channel(Protocol):
    name: str

    async def open(self) -> None: ...

    async def deliver(self, job: DeliveryJob) -> Outcome: ...

    async def close(self) -> None: ...


# channel name -> "module:factory"; the factory takes (plan, **options) and returns a Channel.
REGISTRY: dict[str, str] = {
    "email": "relcomm_tui.channels.email:EmailChannel",
    "webhook": "relcomm_tui.channels.webhook:WebhookChannel",
    "publish": "relcomm_tui.channels.publish:PublishChannel",
    "pager": "relcomm_tui.channels.pager:PagerChannel",
    "manual": "relcomm_tui.channels.manual:ManualChannel",
}


def channel_factory(name: str) -> Callable[..., Channel] | None:
    """The factory for a channel, or None when that channel is not built yet."""
    target = REGISTRY.get(name)
    if target is None:
        return None
    module_name, _, attribute = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError:
        return None
    return getattr(module, attribute, None)
