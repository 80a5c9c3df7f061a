"""`relcomm allow PLAN [--revoke]`: show the commands a plan runs on this host and allow them.

A plan can name commands (the release gate, { command = ... } secrets). None of them runs until
the engineer has seen them and agreed, here or in the app. Consent is keyed by the plan's folder
and the command texts, so editing a command asks again.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("plan", metavar="PLAN", help="the plan: a .toml file or a folder holding plan.toml")
    parser.add_argument("--revoke", action="store_true", help="forget the consent given for this plan's commands")


def run(args: argparse.Namespace) -> int:
    from .. import consent
    from . import load_plan_or_explain

    plan = load_plan_or_explain(args.plan, "relcomm allow")
    if plan is None:
        return 2
    commands = consent.plan_commands(plan)
    if args.revoke:
        forgotten = consent.revoke(plan)
        print("consent forgotten: the plan's commands will not run until allowed again" if forgotten
              else "nothing to forget: the plan's current commands were not allowed")
        return 0
    if not commands:
        print(f"{plan.path} names no commands: nothing to allow")
        return 0
    print(f"{plan.path} runs {len(commands)} command{'s' if len(commands) != 1 else ''} on this host, "
          f"as you, from {plan.root}:")
    print(consent.describe(plan))
    if not consent.needs_consent(plan):
        print("already allowed: nothing changed since; `relcomm allow --revoke PLAN` withdraws it")
        return 0
    try:
        path = consent.allow(plan)
    except OSError as error:
        print(f"relcomm allow: cannot record consent in {consent.config_dir()}: {error.strerror}", file=sys.stderr)
        print("  hint: make that folder writable, or set RELCOMM_CONFIG_DIR to one that is", file=sys.stderr)
        return 2
    print(f"allowed (recorded in {path}); a changed command will need `relcomm allow` again")
    return 0
