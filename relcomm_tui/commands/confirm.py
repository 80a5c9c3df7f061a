"""`relcomm confirm PLAN COMMUNIQUE [RECIPIENT] --note TEXT`: tick a manual step done, headless.

The same ledger call as the send screen's enter key (`app.manual.tick`): the delivery becomes
"marked delivered" and the confirmation (who, when, the note) a receipt that `receipts` and the
report show. RECIPIENT is an address or a name; it may be left out when one step is waiting.
No review is needed: ticking records what a person did, it sends nothing.

Exit 0 when recorded, 2 when the plan, the communique or the person cannot be found or the step
was already done.
"""

from __future__ import annotations

import argparse
import json
import sys

from . import load_plan_or_explain, open_ledger_or_explain, print_json_error, state_dir
from ..app.review import reviewer
from ..common.errors import UserError
from ..common.terminal_text import visible


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("plan", metavar="PLAN", help="the plan: a .toml file or a folder holding plan.toml")
    parser.add_argument("communique", metavar="COMMUNIQUE", help="the manual communique's id")
    parser.add_argument("recipient", metavar="RECIPIENT", nargs="?",
                        help="the person's address or name (needed when several steps are waiting)")
    parser.add_argument("--note", default="", metavar="TEXT", help="who answered, when (kept with the confirmation)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--state", metavar="DIR", help="folder for the ledger (default: beside the plan, .relcomm)")


def _fail(args, plan_path, message: str, hint: str) -> int:
    if args.json:
        print_json_error(plan_path, "error", {"message": message, "hint": hint})
    else:
        print(f"relcomm confirm: {visible(message)}" + (f"\n  hint: {visible(hint)}" if hint else ""), file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    from ..app.manual import find_step, tick  # heavy: loaded only when needed (start-up time, see commands/__init__)

    plan = load_plan_or_explain(args.plan, "relcomm confirm", as_json=args.json)
    if plan is None:
        return 2
    ledger = open_ledger_or_explain(state_dir(plan, args.state), "relcomm confirm",
                                    json_for=plan if args.json else None)
    if ledger is None:
        return 2
    try:
        step = find_step(plan, ledger, args.communique, args.recipient)
        record = tick(plan, ledger, step.delivery_id, reviewer(), args.note)
    except UserError as error:  # StepNotFound, or the manual channel's ManualError (already done)
        return _fail(args, plan.path, error.message, error.hint)
    finally:
        ledger.close()
    if args.json:
        json.dump({"plan": str(plan.path), "delivery": record.as_dict()}, sys.stdout, indent=2)
        print()
    else:
        print(visible(f"done: {record.communique_id} for {record.recipient_display} ({record.reply})"))
    return 0
