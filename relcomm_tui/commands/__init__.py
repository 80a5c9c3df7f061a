"""Headless subcommands of `relcomm`, one module each."""

from __future__ import annotations

import argparse
import sys

from .. import consent

from ..plan import Plan, PlanError, load_plan


def add_allow_commands(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--allow-commands", action="store_true",
                        help="run the plan's commands (release gate, password commands) this once without "
                             "recorded consent; `relcomm allow PLAN` records it instead")


def load_plan_or_explain(path: str, prog: str, *, allow_commands: bool = False) -> Plan | None:
    """The plan, or None after printing why it cannot be loaded (the caller exits 2).

    The plan's commands are granted when consent is recorded or `allow_commands` is given;
    otherwise nothing the plan names will run (the gate and command secrets are refused).
    """
    try:
        plan = load_plan(path)
    except PlanError as error:
        print(f"{prog}: the plan cannot be loaded\n{error}", file=sys.stderr)
        return None
    consent.apply(plan, allow_commands=allow_commands)
    return plan
