"""`relcomm adopt-state PLAN [--state DIR] [--yes]`: review a ledger relcomm did not write for you, and adopt it.

relcomm trusts only a ledger that carries this user's tag (state.py): one that has none (made
by an older relcomm) or whose tag does not verify (it came with the plan, or from another user)
is refused, because what it says decides who is never mailed and which groups count as
reviewed. When such a ledger really is yours, this command shows what it says (its runs, the
deliveries it calls sent, its sign-offs), asks y/N on a terminal (`--yes` for scripts), then
tags it as yours and records the adoption (who, when, what it said) in the ledger itself.
A state folder or ledger that is a link or not yours is never adopted: move it aside instead.
"""

from __future__ import annotations

import argparse
import sys

from . import load_plan_or_explain, state_dir
from ..common.terminal_text import visible
from ..store import state
from ..store.ledger import LEDGER_NAME, Ledger, LedgerError

PROG = "relcomm adopt-state"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("plan", metavar="PLAN", help="the plan: a .toml file or a folder holding plan.toml")
    parser.add_argument("--state", metavar="DIR", help="folder of the ledger (default: beside the plan, .relcomm)")
    parser.add_argument("--yes", action="store_true", help="adopt without asking (after showing what the ledger says)")


def _fail(message: str, hint: str = "") -> int:
    print(f"{PROG}: {message}" + (f"\n  hint: {hint}" if hint else ""), file=sys.stderr)
    return 2


def _shown(text: str) -> str:
    """Text from an untrusted ledger, with control characters made visible (the one rule for output)."""
    return visible(text)


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (ValueError, OSError, AttributeError):
        return False


def run(args: argparse.Namespace) -> int:
    plan = load_plan_or_explain(args.plan, PROG)
    if plan is None:
        return 2
    folder = state_dir(plan, args.state)
    path = folder / LEDGER_NAME
    try:
        if not state.check_entry(folder, "the state folder", folder, directory=True) or \
                not state.check_entry(path, "the ledger", folder):
            return _fail(f"there is no ledger in {folder}: nothing to adopt",
                         "name the folder that holds it with --state DIR")
        ledger = Ledger.open(folder, adopting=True)
    except LedgerError as error:
        return _fail(error.message, error.hint)
    try:
        if ledger.distrusted is None:
            print(f"the ledger {path} is already yours: nothing to adopt")
            return 0
        summary = [_shown(line) for line in ledger.adopt_summary()]
        print(f"The ledger {path} is not trusted: {ledger.distrusted}.")
        print("What it says:")
        for line in summary:
            print(f"  {line}")
        print("Adopting it makes relcomm trust all of this as your own record: deliveries it calls accepted or "
              "marked delivered are never sent again, and its sign-offs count as review of those groups.")
        if not args.yes:
            if not _isatty(sys.stdin):
                return _fail("not adopted: adopting needs --yes when there is no terminal to ask on",
                             "read what the ledger says above, then run again with --yes")
            try:
                answer = input("Adopt this ledger as yours? [y/N] ")
            except (EOFError, KeyboardInterrupt):
                print()
                answer = ""
            if answer.strip().lower() not in ("y", "yes"):
                return _fail("not adopted: nothing was changed",
                             f"{state.way_on(folder)}")
        try:
            ledger.adopt(summary)
        except LedgerError as error:
            return _fail(error.message, error.hint)
        print(f"adopted: {path} is now trusted as yours (the adoption is recorded in it, with who and when)")
        return 0
    finally:
        ledger.close()
