"""Which of the send screen's keys apply now, and why one is greyed out.

A pure function of what the screen shows (`KeyState`), without Textual, so the rules read in one
place and a test can ask them without an app. `SendScreen.check_action` reads a `KeyState` off
itself and asks `offered`; `refresh_keys` asks for every key at once, on one reading.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

from ...script.scheduler import DONE, ScriptState
from ...store.ledger import DEFERRED, FINAL_STATES, IN_DOUBT, QUEUED, REJECTED

SCRIPT_ACTIONS = ("release_checkpoint", "skip_wait")
KEY_ACTIONS = ("pause", "resume", "continue", "cancel", "retry_failed", "resend_in_doubt", "mark_delivered",
               "tick_manual", "test_send") + SCRIPT_ACTIONS
GREYED_BECAUSE = {  # the command palette shows these beside a greyed-out key
    "continue": "nothing left to send", "cancel": "no send is running",
    "retry_failed": "nothing deferred or rejected, or a send is running",
    "resend_in_doubt": "nothing in doubt, or a send is running",
    "mark_delivered": "the highlighted delivery is not in doubt",
    "tick_manual": "the highlighted delivery is not an open manual step",
    "test_send": "a send is running",
}


class Delivery(Protocol):
    """The highlighted delivery, as far as the keys care (a `widgets.delivery_table.Row`)."""

    state: str
    channel: str


@dataclass(frozen=True)
class KeyState:
    """What the send screen's keys depend on, read off the screen when they are asked about."""

    composed: bool = True               # before compose there is no row to act on
    running: bool = False
    paused: bool = False
    cancelling: bool = False
    ledger_open: bool = True
    counts: Counter[str] = field(default_factory=Counter)   # deliveries per state
    highlighted: Delivery | None = None
    open_manual_steps: int = 0
    filtering: bool = False             # typing into the filter: enter is the filter's
    emails: bool = False                # the plan has an email communique to test-send
    scripted: bool = False
    script: ScriptState | None = None


def offered(action: str, now: KeyState) -> bool | None:
    """True: the key applies. None: greyed out, it applies to other rows than the highlighted one.
    False: hidden, it cannot apply now (the footer keeps to what matters and fits 80 columns)."""
    if action in SCRIPT_ACTIONS:
        return script_key(action, now)
    if not now.composed:
        return False
    counts, row, idle = now.counts, now.highlighted, not now.running
    if action in ("pause", "resume"):
        return now.running and now.paused == (action == "resume") and not now.cancelling
    if action == "continue":
        return idle and now.ledger_open and counts[QUEUED] + counts[DEFERRED] > 0
    if action == "cancel":
        return now.running and not now.cancelling
    if action == "retry_failed":
        return idle and counts[DEFERRED] + counts[REJECTED] > 0
    if action == "resend_in_doubt":
        return idle and counts[IN_DOUBT] > 0
    if action == "mark_delivered":
        return (True if row is not None and row.state == IN_DOUBT else None) if counts[IN_DOUBT] else False
    if action == "tick_manual":
        if not now.open_manual_steps or now.filtering:
            return False
        return True if row is not None and row.channel == "manual" and row.state not in FINAL_STATES else None
    if action == "test_send":
        return True if idle and now.ledger_open and now.emails else None
    if action == "receipts":
        return idle
    return True


def script_key(action: str, now: KeyState) -> bool | None:
    """`r` and `w`: hidden without a script, and once it is complete (room for c Receipts)."""
    if not now.scripted or not now.ledger_open:
        return False
    state = now.script
    if state is not None and state.complete:
        return False
    if action == "release_checkpoint":
        return True if state is not None and (state.halted is not None or any(
            v.checkpoint_open and v.status != DONE for v in state.steps)) else None
    if action == "skip_wait":
        return True if state is not None and any(v.wait_open for v in state.steps) else None
    return None
