"""`relcomm cancel-invitation PLAN COMMUNIQUE --yes`: cancel a calendar invitation that went out.

Everyone who holds the invitation (the relay took it, or it may have gone out) gets METHOD:CANCEL
with the next SEQUENCE, built from the ledger's record of the event, so it works after the
communique (or its `[communiques.invitation]`) was removed from the plan. Exactly once per person,
through the send engine; run it again after a stop and it goes on where it stopped. A later
`relcomm send` invites nobody to the cancelled event again.

Without --yes a terminal user types the communique id to confirm; without a terminal it refuses.
Exit 0 when every cancel is accepted, 1 when some are not, 2 for usage, plan or ledger errors.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from . import add_allow_commands, fail, load_plan_or_explain, open_ledger_or_explain, state_dir
from .send import _isatty, _password, _Printer, run_engine
from ..common.terminal_text import visible
from ..plan.invitation import describe
from ..store.ledger import who_am_i


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("plan", metavar="PLAN", help="the plan: a .toml file or a folder holding plan.toml")
    parser.add_argument("communique", metavar="COMMUNIQUE", help="the id of the communique whose invitation to cancel")
    parser.add_argument("--yes", action="store_true", help="confirm without typing the communique id")
    parser.add_argument("--state", metavar="DIR", help="folder for the ledger (default: beside the plan, .relcomm)")
    parser.add_argument("--password-stdin", action="store_true", help="read the SMTP password from standard input")
    add_allow_commands(parser)


PROG = "relcomm cancel-invitation"


def _fail(message: str, hint: str = "") -> int:
    return fail(PROG, message, hint)


def run(args: argparse.Namespace) -> int:
    plan = load_plan_or_explain(args.plan, "relcomm cancel-invitation", allow_commands=args.allow_commands)
    if plan is None:
        return 2
    ledger = open_ledger_or_explain(state_dir(plan, args.state), "relcomm cancel-invitation")
    if ledger is None:
        return 2
    try:
        from ..invitations import store  # heavy: loaded only when needed (start-up time, see commands/__init__)

        known = store.versions(ledger, plan.release.version, args.communique)
        if not known:
            sent = ", ".join(sorted(store.released(ledger, plan.release.version))) or "none"
            return _fail(f"no invitation of {args.communique!r} was sent for {plan.release.name} {plan.release.version}",
                         f"invitations sent for this release: {sent}")
        event = known[-1].event
        print(visible(f"Cancel {event.title!r}, {describe(event.when)}: everyone who holds the invitation gets "
                      "a cancellation (METHOD:CANCEL)."))
        if not args.yes:
            if not _isatty(sys.stdin):
                return _fail("not confirmed: cancelling needs --yes when there is no terminal to ask on")
            try:
                typed = input(visible(f"Type the communique id ({args.communique}) to confirm: "))
            except (EOFError, KeyboardInterrupt):
                typed = ""
            if typed.strip() != args.communique:
                return _fail("not confirmed: nothing was sent")
        password = None
        if args.password_stdin:
            password = sys.stdin.readline().rstrip("\r\n") or None
        elif plan.smtp.username:
            password = _password(plan)
            if isinstance(password, int):
                return password
        return asyncio.run(_cancel(plan, ledger, args.communique, password))
    finally:
        ledger.close()


async def _cancel(plan, ledger, communique_id: str, password: str | None) -> int:
    # heavy: loaded only when needed (start-up time, see commands/__init__)
    from ..delivery.engine import SendEngine
    from ..invitations.send import CancelError, cancel_plan

    try:
        widened, ident, people = await asyncio.to_thread(cancel_plan, plan, ledger, communique_id)
    except CancelError as error:
        return _fail(error.message, error.hint)
    login, host = who_am_i()
    printer = _Printer(sys.stdout)
    engine = SendEngine(widened, ledger, only=[ident], password=password, on_event=printer, who=login, host=host)
    summary, code = await run_engine(plan, engine, printer, PROG)
    if summary is not None:
        accepted = summary.counts.get("accepted", 0)
        print(visible(f"cancellation of {communique_id}: {accepted} of {people} accepted by the relay"))
    return code
