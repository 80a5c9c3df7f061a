"""Channels: one module per way a communique goes out, behind one small async interface.

The contract (the `Channel` protocol, `DeliveryJob`, `Intent`, `Outcome`, `ChannelSettings`, the
dry run's `Rehearsal` and `Outbox`) is in `channels.base`; it is re-exported here. Email is
`channels.email.EmailChannel`; webhook, publish, pager and manual are registered below. A channel
whose module cannot be imported gives None from `channel_factory`, and the engine reports its
communiques as not sent ("channel X not available yet") instead of failing.

Every factory takes (plan, *, password=None, render=None) and ignores what it does not use: the
engine passes the same arguments to every channel and asks each for its `settings`.
"""

from __future__ import annotations

import importlib
from typing import Callable

from .base import (  # noqa: F401  (the contract, re-exported)
    RETRY_AFTER_MAX, Channel, ChannelSettings, ChannelStopped, DeliveryJob, DeliveryWithdrawn, Intent, Outbox,
    Outcome, OutcomeState, Rehearsal, RetryPolicy, render_error_text,
)

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
