"""`relcomm review PLAN [GROUP...]`: sign off stakeholder groups headless, as the checklist's space key does.

Every required group when none is named. A sign-off records who (login@host), when, and the plan's
digest, so `relcomm send` (and the app) accept it only for the plan as it is now: edit the plan
and it must be reviewed again. Read what you sign off first: `relcomm validate PLAN`, the preview
in the app, or `relcomm send PLAN --dry-run` (the messages as files).

Exit 0 when recorded, 2 for a plan that does not load, an unusable ledger or an unknown group.
"""

from __future__ import annotations

import argparse
import json
import sys

from . import load_plan_or_explain, open_ledger_or_explain, print_json_error, state_dir
from ..app.review import UnknownGroup, groups_to_review, sign_off
from ..common.terminal_text import visible


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("plan", metavar="PLAN", help="the plan: a .toml file or a folder holding plan.toml")
    parser.add_argument("groups", metavar="GROUP", nargs="*",
                        help="stakeholder group ids to sign off (default: every required group)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--state", metavar="DIR", help="folder for the ledger (default: beside the plan, .relcomm)")


def run(args: argparse.Namespace) -> int:
    from ..app.readiness import reviews, unreviewed  # heavy: loaded only when needed (start-up time, see commands/__init__)

    plan = load_plan_or_explain(args.plan, "relcomm review", as_json=args.json)
    if plan is None:
        return 2
    try:
        chosen = groups_to_review(plan, args.groups)
    except UnknownGroup as error:
        if args.json:
            print_json_error(plan.path, "error", {"message": error.message, "hint": error.hint})
        else:
            print(f"relcomm review: {visible(error.message)}\n  hint: {visible(error.hint)}", file=sys.stderr)
        return 2
    ledger = open_ledger_or_explain(state_dir(plan, args.state), "relcomm review", json_for=plan if args.json else None)
    if ledger is None:
        return 2
    try:
        signed = sign_off(ledger, plan, chosen)
        still = unreviewed(plan, reviews(ledger, plan).reviewed)
    finally:
        ledger.close()
    if args.json:
        json.dump({"plan": str(plan.path), "release": {"name": plan.release.name, "version": plan.release.version},
                   "plan_digest": plan.digest, "signed_off": [s.as_dict() for s in signed],
                   "required_not_reviewed": still}, sys.stdout, indent=2)
        print()
        return 0
    release = visible(f"{plan.release.name} {plan.release.version}")
    if not signed:
        print(f"{release}: the plan has no required group; name the groups to sign off (relcomm review PLAN GROUP...)")
    for sign in signed:
        group = plan.group(sign.group_id)
        members = len(group.members) if group else 0
        reaching = ", ".join(c.id for c in plan.communiques_for(sign.group_id)) or "no communique"
        print(visible(f"reviewed {sign.group_id} ({sign.name}: {members} members; {reaching})"))
    if signed:
        print(visible(f"signed off by {signed[0].who} at {signed[0].at[:19]} for plan digest {plan.digest[:12]}"))
    if still:
        print(visible(f"still not reviewed: {', '.join(still)}"))
    return 0
