"""`relcomm checkpoint PLAN [STEP]`: release a checkpoint of the plan's script, headless.

Without STEP it shows where the script stands and what waits for the engineer (checkpoints, waits,
a halt) with the exact command for each. With STEP it shows what happened so far and releases that
step's checkpoint; `--skip-wait` ends the step's wait and `not_before` now; `--despite-halt` lets
the script go on after a step whose halt condition holds. A terminal asks y/N first; without one,
`--yes` is needed. Nothing is sent here: the running `relcomm send` (or the app) sees the release
within a second and goes on; if none runs, the next `relcomm send PLAN --yes` does.
"""

from __future__ import annotations

import argparse
import json
import sys

from . import load_plan_or_explain, open_ledger_or_explain, state_dir
from ..common.terminal_text import visible
from ..script.clock import utc_now
from ..store.ledger import who_am_i


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("plan", metavar="PLAN", help="the plan: a .toml file or a folder holding plan.toml")
    parser.add_argument("step", metavar="STEP", nargs="?", help="the step whose checkpoint to release")
    parser.add_argument("--skip-wait", action="store_true", help="end the step's wait and not_before now")
    parser.add_argument("--despite-halt", action="store_true",
                        help="let the script go on after this step although its halt condition holds")
    parser.add_argument("--note", default="", help="recorded with the release (who confirmed, where)")
    parser.add_argument("--yes", action="store_true", help="do not ask (needed without a terminal)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--state", metavar="DIR", help="folder for the ledger (default: beside the plan, .relcomm)")


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (ValueError, OSError, AttributeError):
        return False


def run(args: argparse.Namespace) -> int:
    # heavy: loaded only when needed (start-up time, see commands/__init__)
    from ..script.progress import ScriptError, release_checkpoint, script_state, skip_wait
    from ..script.scheduler import HALTED

    prog = "relcomm checkpoint"
    plan = load_plan_or_explain(args.plan, prog, as_json=args.json)
    if plan is None:
        return 2
    if not plan.steps:
        return _fail(prog, "the plan has no script ([[steps]]): everything goes out at once, there is no checkpoint",
                     "see docs/plan-format.md, The script")
    ledger = open_ledger_or_explain(state_dir(plan, args.state), prog, json_for=plan if args.json else None)
    if ledger is None:
        return 2
    try:
        now = utc_now()
        state = script_state(plan, ledger, now)
        if args.step is None:
            return _show(plan, state, now, args.json)
        view = state.view(args.step)
        if view is None:
            known = ", ".join(s.id for s in plan.steps)
            return _fail(prog, f"no step {args.step!r} in the plan's script", f"the steps are: {known}")
        if view.status == HALTED and not args.despite_halt:
            return _fail(prog, f"step {view.id} is halted: {view.reason}",
                         "fix it (relcomm status PLAN), or go on anyway with --despite-halt")
        if view.status != HALTED and args.despite_halt:
            return _fail(prog, f"step {view.id} is not halted (it is {view.label})", "leave out --despite-halt")
        if not args.json:
            _show(plan, state, now, False)
            what = ("skip the wait of" if args.skip_wait else
                    "go on after the halt at" if args.despite_halt else "release the checkpoint of")
            print()
            print(visible(f"{what} {view.id}" + (f": {view.reason}" if view.reason else "")))
        if not args.yes:
            if not _isatty(sys.stdin):
                return _fail(prog, "not confirmed: this needs --yes when there is no terminal to ask on")
            try:
                answer = input("Go ahead? [y/N] ")
            except (EOFError, KeyboardInterrupt):
                answer = ""
            if answer.strip().lower() not in ("y", "yes"):
                print("nothing changed")
                return 1
        who = who_am_i()[0]
        try:
            if args.skip_wait:
                done = skip_wait(plan, ledger, view.id, utc_now(), who=who)
            else:
                done = release_checkpoint(plan, ledger, view.id, utc_now(), who=who, note=args.note)
        except ScriptError as error:
            return _fail(prog, error.message, error.hint, args.json)
        if args.json:
            print(json.dumps({"plan": str(plan.path), "ok": True, "step": view.id, "done": done}))
        else:
            print(visible(done + "; a running send goes on within a second, else: relcomm send PLAN --yes"))
        return 0
    finally:
        ledger.close()


def _show(plan, state, now, as_json: bool) -> int:
    if as_json:
        print(json.dumps({"plan": str(plan.path), "summary": state.summary,
                          "steps": [v.as_dict(now) for v in state.steps]}, indent=2))
        return 0
    print(visible(f"{plan.release.name} {plan.release.version}: {state.summary}"))
    for line in step_lines(state, now):
        print(visible(line))
    for view in state.steps:
        if view.status == "checkpoint":
            print(visible(f"  release it: relcomm checkpoint {plan.path} {view.id}"))
        if view.wait_open:
            print(visible(f"  skip the wait of {view.id}: relcomm checkpoint {plan.path} {view.id} --skip-wait"))
        if view.status == "halted":
            print(visible(f"  go on anyway after {view.id}: relcomm checkpoint {plan.path} {view.id} --despite-halt"))
    return 0


MARKS = {"done": "✓", "running": "▶", "ready": "▶", "waiting": "…", "checkpoint": "⏸", "halted": "✗"}


def step_lines(state, now) -> list[str]:
    """The script, one line per step: mark, id, status, what it waits for; shared with `relcomm status`."""
    from ..script.scheduler import countdown  # heavy: loaded only when needed (start-up time, see commands/__init__)

    width = max((len(v.id) for v in state.steps), default=4)
    lines = []
    for view in state.steps:
        left = countdown(view.until, now)
        sent = f"{view.sent}/{view.total}" if view.total else ""
        text = f"  {MARKS.get(view.status, ' ')} {view.id:<{width}}  {view.label:<13} {sent:>7}  {view.reason}"
        lines.append(text.rstrip() + (f" ({left} left)" if left else ""))
    return lines


def _fail(prog: str, message: str, hint: str = "", as_json: bool = False) -> int:
    if as_json:
        print(json.dumps({"ok": False, "message": message, "hint": hint}))
    print(f"{prog}: {visible(message)}" + (f"\n  hint: {visible(hint)}" if hint else ""), file=sys.stderr)
    return 2
