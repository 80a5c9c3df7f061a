"""`relcomm validate PLAN [--json] [--no-gate] [--no-secrets]`: check a plan and list every finding.

Exit status: 0 no errors (warnings allowed), 1 errors, 2 the plan could not be loaded.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..plan import consent
from ..common.terminal_text import visible, visible_lines
from . import add_allow_commands
from ..common.text import plural
from ..plan import PlanError, load_plan


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("plan", metavar="PLAN", help="the plan: a .toml file or a folder holding plan.toml")
    parser.add_argument("--json", action="store_true", help="print the findings as JSON")
    parser.add_argument("--no-gate", action="store_true", help="do not run the release gate")
    parser.add_argument("--no-secrets", action="store_true", help="do not resolve secret references")
    add_allow_commands(parser)


def run(args: argparse.Namespace) -> int:
    from ..checks.rules import run_checks  # heavy: loaded only when needed (start-up time, see commands/__init__)

    try:
        plan = load_plan(args.plan)
    except PlanError as error:
        if args.json:
            print(json.dumps({"plan": str(args.plan), "ok": False, "load_error": error.as_dict()}, indent=2))
        else:
            print(f"relcomm: the plan cannot be loaded\n{visible_lines(error)}", file=sys.stderr)
        return 2
    consent.apply(plan, allow_commands=args.allow_commands)
    findings = run_checks(plan, gate=not args.no_gate, secrets=not args.no_secrets)
    errors = sum(1 for f in findings if f.severity == "error")
    warnings = len(findings) - errors
    recipients = len({m.key for g in plan.groups for m in g.members})
    summary = {
        "errors": errors, "warnings": warnings, "communiques": len(plan.communiques), "groups": len(plan.groups),
        "recipients": recipients, "digest": plan.digest,
    }
    if args.json:
        print(json.dumps({"plan": str(plan.path), "ok": errors == 0, "findings": [f.as_dict() for f in findings],
                          "summary": summary}, indent=2))
        return 1 if errors else 0
    out = sys.stdout
    for finding in findings:
        out.write(visible(f"{_place(finding.location, plan.root)}: {finding.severity}[{finding.id}] {finding.message}")
                  + "\n")
        if finding.hint:
            out.write(f"    hint: {visible(finding.hint)}\n")
    if findings:
        out.write("\n")
    verdict = f"{plural(errors, 'error')}, {plural(warnings, 'warning')}" if findings else "no problems"
    out.write(f"{verdict} in {plural(len(plan.communiques), 'communique')} to {plural(len(plan.groups), 'group')} "
              f"({plural(recipients, 'recipient')})\n")
    return 1 if errors else 0


def _place(location, root: Path) -> str:
    """path:line, relative to the current folder when that is shorter (editors and terminals link it)."""
    file = Path(location.file)
    try:
        shown = str(file.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        shown = str(file)
    if location.line is not None:
        shown += f":{location.line}"
    return shown
