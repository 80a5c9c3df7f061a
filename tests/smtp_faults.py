"""Fault rules for the tests' SMTP server (tests/faulty_mailserver.py).

A rule says how the server misbehaves and how often: :class:`TempFail`,
:class:`PermFail`, :class:`DropConnection`, :class:`Delay`, :class:`Garbage`
act per recipient (``server.faults[address]``), per sender at MAIL
(``at="mail"``, keyed by the MAIL FROM address) or per connection
(``server.connection_faults``, ``at="greeting"``); :class:`CloseAfter` closes a
connection after N messages. The demo server (relcomm_tui/demo/) knows none of this.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence, Union

__all__ = ["CloseAfter", "Delay", "DropConnection", "FaultRule", "FaultTable", "Garbage", "PermFail", "TempFail"]

@dataclass
class _Rule:
    """Base for fault rules: fires ``times`` times (``None`` = always)."""

    fired: int = field(default=0, init=False, compare=False)

    def _consume(self) -> bool:
        times = getattr(self, "times", None)
        if times is not None and self.fired >= times:
            return False
        self.fired += 1
        return True


# Where a rule acts.  Per-recipient rules (in :attr:`FaultyMailServer.faults`):
# "rcpt", "data" (the reply to the end of the message) and "content" (while the
# message text arrives).  Rules keyed by the *sender* address act at "mail".
# Connection rules (in :attr:`FaultyMailServer.connection_faults`) act at
# "greeting" or, for :class:`CloseAfter`, after a number of messages.


@dataclass
class TempFail(_Rule):
    """Answer ``code msg`` (4xx) at RCPT (``at="rcpt"``), at MAIL
    (``at="mail"``, keyed by sender), at the end of DATA (``at="data"``) or
    instead of the greeting (``at="greeting"``, then close: use 421)
    ``times`` times, then accept."""

    times: Optional[int] = 1
    code: int = 451
    msg: str = "4.3.0 Temporary failure, please try again later"
    at: str = "rcpt"


@dataclass
class PermFail(_Rule):
    """Answer ``code msg`` (5xx) at RCPT (``at="rcpt"``), MAIL (``at="mail"``),
    the end of DATA (``at="data"``) or the greeting (``at="greeting"``);
    every time unless ``times`` is set."""

    code: int = 550
    msg: str = "5.1.1 User unknown"
    at: str = "rcpt"
    times: Optional[int] = None


@dataclass
class DropConnection(_Rule):
    """Close the TCP connection without replying, ``times`` times.

    ``at="data"`` (default): after the message content was received, before
    the reply - the "in doubt" case.  With ``deliver=True`` the message is
    stored before the drop (the client cannot know it was delivered).
    ``at="content"``: after ``after_bytes`` bytes of the message text, while
    the client is still sending it (reset, nothing stored).
    ``at="rcpt"`` / ``at="mail"``: instead of answering RCPT / MAIL.
    ``at="greeting"`` (a connection rule): accept TCP, close at once.
    """

    at: str = "data"
    times: Optional[int] = 1
    deliver: bool = False
    after_bytes: int = 0


@dataclass
class Delay(_Rule):
    """Wait ``seconds`` before replying to the end of DATA (``at="data"``),
    to RCPT (``at="rcpt"``), to MAIL (``at="mail"``) or before the greeting
    (``at="greeting"``); every time unless ``times`` is set.  A long delay is
    a server that stalls."""

    seconds: float = 1.0
    at: str = "data"
    times: Optional[int] = None


@dataclass
class Garbage(_Rule):
    """Send ``payload`` (raw bytes, not an SMTP reply) instead of the reply
    at ``at`` ("greeting", "mail", "rcpt" or "data"), ``times`` times; with
    ``close=True`` close the connection right after.  At "data" the message
    is not stored."""

    payload: bytes = b"\x00\xffthis is not SMTP\r\n"
    at: str = "rcpt"
    times: Optional[int] = 1
    close: bool = False


@dataclass
class CloseAfter(_Rule):
    """A connection rule: answer the ``messages``-th message of a connection
    (250, stored), then close that connection; for ``times`` connections."""

    messages: int = 1
    times: Optional[int] = 1
    at: str = "session"


FaultRule = Union[TempFail, PermFail, DropConnection, Delay, Garbage, CloseAfter]


class FaultTable(dict):
    """``{recipient address: rule or list of rules}``, keys case-insensitive.

    ``server.faults["bob@example.com"] = TempFail(times=1)``
    """

    def __setitem__(self, key: str, value: Union[FaultRule, Sequence[FaultRule]]) -> None:
        super().__setitem__(key.lower(), value)

    def __getitem__(self, key: str):
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key.lower())

    def get(self, key: str, default=None):
        return super().get(key.lower(), default)

    def update(self, *args, **kwargs) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def rules(self, address: str, at: str) -> list[FaultRule]:
        """The rules for ``address`` that act at stage ``at``."""
        value = self.get(address)
        if value is None:
            return []
        rules = list(value) if isinstance(value, (list, tuple)) else [value]
        return [r for r in rules if r.at == at]
