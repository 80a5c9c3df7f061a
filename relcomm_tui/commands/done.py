"""`relcomm done PLAN COMMUNIQUE [--to WHO]`: mark a manual step's tasks done, headless.

The app's `enter` on a manual row does the same for one person. A script that waits for a manual
step (the executives called before the customers hear) goes on once every task of it is done;
a running `relcomm send` sees it within a second. A terminal asks y/N first; without one, `--yes`.
"""

from __future__ import annotations

import argparse
import sys

from ..common.terminal_text import visible


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("plan", metavar="PLAN", help="the plan: a .toml file or a folder holding plan.toml")
    parser.add_argument("communique", metavar="COMMUNIQUE", help="the manual communique (e.g. exec-briefing)")
    parser.add_argument("--to", metavar="WHO", action="append", default=[],
                        help="only this person's task (address or name; repeatable); default: every open task")
    parser.add_argument("--note", default="", help="recorded with each task (what was said, where)")
    parser.add_argument("--yes", action="store_true", help="do not ask (needed without a terminal)")
    parser.add_argument("--state", metavar="DIR", help="folder for the ledger (default: beside the plan, .relcomm)")


def run(args: argparse.Namespace) -> int:
    from ..channels.manual import ManualError, confirm_manual
    from ..store.ledger import AWAITING, who_am_i
    from . import load_plan_or_explain, open_ledger_or_explain, state_dir

    prog = "relcomm done"
    plan = load_plan_or_explain(args.plan, prog)
    if plan is None:
        return 2
    communique = plan.communique(args.communique)
    manual = [c.id for c in plan.communiques if c.channel == "manual"]
    if communique is None or communique.channel != "manual":
        what = "no communique" if communique is None else f"{communique.id} goes by {communique.channel}, not by hand:"
        return _fail(prog, f"{what} {args.communique!r}" if communique is None else what,
                     f"manual communiques: {', '.join(manual) or 'none'}")
    ledger = open_ledger_or_explain(state_dir(plan, args.state), prog)
    if ledger is None:
        return 2
    try:
        wanted = [w.strip().lower() for w in args.to]
        open_tasks = [r for r in ledger.deliveries(plan.release.version, communique.id) if r.state == AWAITING]
        if wanted:
            open_tasks = [r for r in open_tasks if r.recipient_key in wanted
                          or any(w in r.recipient_display.lower() for w in wanted)]
        if not open_tasks:
            return _fail(prog, f"no open task of {communique.id}" + (f" for {', '.join(args.to)}" if args.to else ""),
                         "tasks open when the send hands the step out (relcomm status PLAN shows them)")
        for record in open_tasks:
            print(visible(f"  {record.recipient_display}: {record.reply or ''}"))
        if not args.yes:
            if not _isatty(sys.stdin):
                return _fail(prog, "not confirmed: this needs --yes when there is no terminal to ask on")
            try:
                answer = input(f"Mark these {len(open_tasks)} task(s) done? [y/N] ")
            except (EOFError, KeyboardInterrupt):
                answer = ""
            if answer.strip().lower() not in ("y", "yes"):
                print("nothing changed")
                return 1
        who = who_am_i()[0]
        for record in open_tasks:
            try:
                confirm_manual(ledger, record.id, who, args.note)
            except ManualError as error:
                return _fail(prog, error.message, error.hint or "")
        print(f"{len(open_tasks)} task(s) of {visible(communique.id)} marked done by {visible(who)}")
        return 0
    finally:
        ledger.close()


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (ValueError, OSError, AttributeError):
        return False


def _fail(prog: str, message: str, hint: str = "") -> int:
    print(f"{prog}: {visible(message)}" + (f"\n  hint: {visible(hint)}" if hint else ""), file=sys.stderr)
    return 2
