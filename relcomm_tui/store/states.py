"""The words of the ledger: delivery states and their labels, its errors, timestamps and who runs it.

Its own module so the state-folder trust rules (state.py) and the ledger can both use them
without importing each other.
"""

from __future__ import annotations

import datetime as dt
import getpass
import os
import socket

from ..common.errors import UserError

# Delivery states. `in_doubt` is shown as "in doubt".
QUEUED = "queued"
SENDING = "sending"
ACCEPTED = "accepted"
DEFERRED = "deferred"
REJECTED = "rejected"
IN_DOUBT = "in_doubt"
MARKED_DELIVERED = "marked_delivered"
# A manual step (a call, a briefing) handed to a person: nothing is sent, the engineer confirms it
# later (channels.manual.confirm_manual marks it delivered). Never re-issued by a re-run.
AWAITING = "awaiting"
STATES = (QUEUED, SENDING, ACCEPTED, DEFERRED, REJECTED, IN_DOUBT, MARKED_DELIVERED, AWAITING)
# A delivery in one of these is done: a re-run never sends it again.
FINAL_STATES = frozenset({ACCEPTED, MARKED_DELIVERED})
STATE_LABELS = {
    QUEUED: "queued", SENDING: "sending", ACCEPTED: "accepted", DEFERRED: "deferred",
    REJECTED: "rejected", IN_DOUBT: "in doubt", MARKED_DELIVERED: "marked delivered",
    AWAITING: "awaiting confirmation",
}
RUN_MODES = ("send", "dry-run", "test", "follow-up")


class LedgerError(UserError):
    """The ledger cannot be opened or used; `hint` says what to do."""


class LedgerStorageError(LedgerError):
    """The ledger's file cannot be read or written (disk full, read-only, locked by another
    process, I/O error). Nothing can be recorded, so nothing more may be sent."""


class LedgerRefused(LedgerError):
    """The state folder, the ledger or the send lock is not this user's own: a symbolic link,
    another owner, or a ledger relcomm did not write for them (state.py). Nothing in it is used."""


class ClaimRefused(LedgerError):
    """A delivery could not be claimed for sending (it is not queued or deferred any more): the
    run that asked does not send it."""


def now() -> str:
    """UTC timestamp text, sortable, with milliseconds."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def who_am_i() -> tuple[str, str]:
    """(login, host) recorded with every run."""
    try:
        login = getpass.getuser()
    except Exception:  # no login name in some containers
        login = str(os.getuid())
    return login, socket.gethostname()
