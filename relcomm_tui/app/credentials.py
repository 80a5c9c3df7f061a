"""The SMTP password: one policy for the send screen, the receipts screen's follow-up and `relcomm send`.

1. No SMTP login in the plan: no password.
2. The plan's reference (keyring, environment, a command) resolves: that.
3. Otherwise ask through the caller's callback, saying why the lookup failed: the app shows its
   masked dialog, a terminal gets a getpass prompt, and a headless run without a terminal is
   refused with a hint (`refuse_headless`).

What is typed stays in the caller's memory for its session; nothing is written anywhere.
The lookup blocks (keyring over D-Bus, password commands): the async form runs it in a thread.
"""

from __future__ import annotations

import asyncio
import getpass
import sys
from dataclasses import dataclass
from typing import Awaitable, Callable

from ..common.errors import UserError
from ..common.terminal_text import visible
from ..plan.model import Plan
from ..plan.secrets import SecretError, describe, is_reference, login_password

NO_PASSWORD_HINT = 'set password = { env = "RELCOMM_SMTP_PASSWORD" } in [transport.smtp], or use --password-stdin'


class NoPassword(UserError):
    """The login needs a password and none was found or given: nothing is sent."""


@dataclass(frozen=True)
class Ask:
    """What the callback is told: whose password, and why it could not be looked up."""

    account: str   # "release-bot at smtp.example.com:587"
    why: str       # "The password could not be read from environment variable X: it is not set."
    hint: str


Asker = Callable[[Ask], "str | None"]
AsyncAsker = Callable[[Ask], Awaitable["str | None"]]


def needs_password(plan: Plan) -> bool:
    return bool(plan.smtp.username)


def account(plan: Plan) -> str:
    smtp = plan.smtp
    return f"{smtp.username} at {smtp.host}:{smtp.port}"


def lookup(plan: Plan, timeout: float = 10.0) -> tuple[str | None, Ask]:
    """(the password, None-ask) when the plan's reference resolves, else (None, what to ask)."""
    try:
        return login_password(plan.smtp, timeout), Ask(account(plan), "", "")
    except SecretError as error:
        reference = plan.smtp.password
        if reference is None or not is_reference(reference):
            return None, Ask(account(plan), f"{error.message}.", NO_PASSWORD_HINT)
        why = f"The password could not be read from {describe(reference)}: {error.message}."
        return None, Ask(account(plan), why, error.hint or NO_PASSWORD_HINT)


def smtp_password(plan: Plan, ask: Asker) -> str | None:
    """The password (None when the plan has no login). Raises NoPassword when none is given."""
    if not needs_password(plan):
        return None
    password, question = lookup(plan)
    if password is not None:
        return password
    typed = ask(question)
    if not typed:
        raise NoPassword("no SMTP password given: nothing was sent", question.hint)
    return typed


async def smtp_password_async(plan: Plan, ask: AsyncAsker) -> str | None:
    """`smtp_password` for an event loop: the lookup runs in a thread, `ask` is awaited."""
    if not needs_password(plan):
        return None
    password, question = await asyncio.to_thread(lookup, plan)
    if password is not None:
        return password
    typed = await ask(question)
    if not typed:
        raise NoPassword("no SMTP password given: nothing was sent", question.hint)
    return typed


def refuse_headless(question: Ask) -> str | None:
    """For a run without a terminal: never prompt; the caller gets NoPassword with the hint."""
    raise NoPassword(f"cannot get the SMTP password for {question.account}: {question.why.rstrip('.')}",
                     question.hint)


def terminal_prompt(question: Ask) -> str | None:
    """A masked prompt on the terminal (getpass), after saying why the lookup failed."""
    if question.why:
        print(visible(question.why), file=sys.stderr)
    try:
        return getpass.getpass(visible(f"SMTP password for {question.account}") + ": ") or None
    except (EOFError, KeyboardInterrupt):
        return None
