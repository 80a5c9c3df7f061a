"""`relcomm allow PLAN [--yes | --show | --revoke]`: show the commands a plan runs on this host and allow them.

A plan can name commands (the release gate, { command = ... } secrets). None of them runs until
the engineer has seen them and agreed, here or in the app. Consent covers the plan's folder, the
command texts and the content of every file they name (consent.py), so editing a command or a
`git pull` that changes its script asks again.

Rules: consent is never recorded unseen. On a terminal the commands are shown and the answer is
y/N (No by default, and on end of input). Without a terminal only `--yes` records it (for scripts
that have reviewed the plan another way); `--show` only shows. What is recorded is the snapshot
that was shown: if a named file changes while the question is open, nothing is recorded.
"""

from __future__ import annotations

import argparse
import sys

from . import load_plan_or_explain
from ..plan import consent


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("plan", metavar="PLAN", help="the plan: a .toml file or a folder holding plan.toml")
    answer = parser.add_mutually_exclusive_group()
    answer.add_argument("--yes", action="store_true",
                        help="allow without asking (for scripts; review the commands with --show first)")
    answer.add_argument("--show", action="store_true", help="only show the commands and the files they name; record nothing")
    answer.add_argument("--revoke", action="store_true", help="forget the consent given for this plan's folder")


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (ValueError, OSError, AttributeError):  # closed or replaced streams
        return False


def _ask(question: str) -> bool:
    try:
        return input(question).strip().lower() in ("y", "yes")
    except (EOFError, KeyboardInterrupt):
        print()
        return False


def run(args: argparse.Namespace) -> int:
    plan = load_plan_or_explain(args.plan, "relcomm allow")
    if plan is None:
        return 2
    if args.revoke:
        forgotten = consent.revoke(plan)
        print("consent forgotten: the plan's commands will not run until allowed again" if forgotten
              else "nothing to forget: no consent was recorded for this plan's folder")
        return 0
    seen = consent.review(plan)
    count = len(seen.commands)
    if not count:
        print(f"{plan.path} names no commands: nothing to allow")
        return 0
    print(f"{plan.path} runs {count} command{'s' if count != 1 else ''} on this host, as you, from {plan.root}:")
    print(consent.describe(seen))
    allowed_before = not consent.needs_consent(seen)
    if not allowed_before:
        for change in consent.changed_since_allowed(seen):
            print(f"  since you last allowed them: {change}")
    if args.show:
        print("allowed: they run as shown" if allowed_before
              else "not allowed yet: `relcomm allow PLAN` asks you to allow them")
        return 0
    if allowed_before:
        print("already allowed: nothing changed since; `relcomm allow --revoke PLAN` withdraws it")
        return 0
    if not args.yes:
        if not (_isatty(sys.stdin) and _isatty(sys.stdout)):
            print("relcomm allow: not allowed: there is no terminal to ask on", file=sys.stderr)
            print("  hint: review the commands above (relcomm allow PLAN --show), then run again with --yes",
                  file=sys.stderr)
            return 2
        if not _ask(f"Allow {'these commands' if count != 1 else 'this command'} to run on this host, as you? [y/N] "):
            print("not allowed: nothing recorded; the gate is not run and sending stays locked")
            return 1
        if consent.review(plan).digest != seen.digest:
            print("relcomm allow: a file the commands name changed while you were deciding: nothing recorded",
                  file=sys.stderr)
            print("  hint: run `relcomm allow PLAN` again to see them as they are now", file=sys.stderr)
            return 1
    try:
        path = consent.allow(seen)
    except OSError as error:
        print(f"relcomm allow: cannot record consent in {consent.config_dir()}: {error.strerror}", file=sys.stderr)
        print("  hint: make that folder writable, or set RELCOMM_CONFIG_DIR to one that is", file=sys.stderr)
        return 2
    print(f"allowed (recorded in {path}); a changed command or named file will need `relcomm allow` again")
    return 0
