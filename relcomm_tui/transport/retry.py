"""The one retry policy: how often a transient failure is tried again within a run, how long
between tries, and when a receiver's Retry-After is too long to wait for.

The send engine is the only thing that retries (email, webhook, pager and publish alike); each
channel's settings carry one `RetryPolicy` made from the plan (`[transport.smtp] max_attempts`,
`[channels.NAME] max_attempts`). No channel retries inside a delivery.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

# The longest a receiver's Retry-After is waited for, per retry: asked for longer (a day, or 400
# digits), the delivery is deferred at once for the next `relcomm send` instead of holding the run.
RETRY_AFTER_MAX = 60.0
RETRY_AFTER_LONGEST = 10.0 ** 9  # what any longer ask (400 digits, a date in 3000) reads as: ~31 years


@dataclass(frozen=True)
class RetryPolicy:
    """How often a transient failure is tried again within a run, and how long between tries."""

    max_attempts: int = 5
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    retry_after_max: float = RETRY_AFTER_MAX  # a receiver asking for longer is deferred instead of waited for

    def backoff(self, attempt: int) -> float:
        """Exponential with jitter: about base, 2 x base, 4 x base... never over backoff_max."""
        return min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds before the next try after `attempt` failed: the backoff, or the receiver's
        Retry-After when longer. Check `gives_up` and `refuses_wait` first."""
        delay = self.backoff(attempt)
        return max(delay, retry_after) if retry_after is not None else delay

    def gives_up(self, attempt: int) -> bool:
        return attempt >= self.max_attempts

    def refuses_wait(self, retry_after: float | None) -> str | None:
        """Why a receiver's Retry-After is not waited for in this run, or None."""
        if retry_after is None or retry_after <= self.retry_after_max:
            return None
        shown = f"more than {RETRY_AFTER_LONGEST:.0f} s" if retry_after >= RETRY_AFTER_LONGEST else f"{retry_after:.0f} s"
        return (f"the receiver asks to wait {shown}, longer than relcomm waits within a run "
                f"({self.retry_after_max:g} s): deferred; the next `relcomm send` tries again")
